#!/bin/sh
# One login role and one database per dure service (dure_identity,
# dure_posting, dure_notice, dure_notification, dure_reporting, dure_web),
# each database owned by its role and closed to every other role: no service
# can use another's credentials or reach another's tables.
#
# Run once by the postgres image's entrypoint on an empty data directory
# (/docker-entrypoint-initdb.d), with the passwords in IDENTITY_DB_PASSWORD,
# POSTING_DB_PASSWORD, NOTICE_DB_PASSWORD, NOTIFICATION_DB_PASSWORD,
# REPORTING_DB_PASSWORD and WEB_DB_PASSWORD.
# Used by deploy/compose.yaml and the Kubernetes dev overlay.
set -eu

for service in identity posting notice notification reporting web; do
  variable="$(echo "$service" | tr '[:lower:]' '[:upper:]')_DB_PASSWORD"
  eval "password=\${$variable:-}"
  if [ -z "$password" ]; then
    echo "init-databases: $variable is not set" >&2
    exit 1
  fi
  psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
    --set name="dure_$service" --set password="$password" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
SQL
  echo "init-databases: created role and database dure_$service"
done
