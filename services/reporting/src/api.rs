//! reporting's public HTTP API (docs/reporting.md): reports for admins, and
//! the rebuild.

use crate::Reports;
use crate::rebuild::Status;
use crate::store::{self, Author, Table};
use axum::extract::State;
use axum::http::StatusCode;
use dure_chassis::auth::{Claims, Role};
use dure_chassis::http::Query;
use dure_chassis::{ApiError, clock};
use dure_contracts::Problem;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use time::{Duration, OffsetDateTime};
use utoipa::openapi::schema::{KnownFormat, Object, ObjectBuilder, SchemaFormat, Type};
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Buckets one activity report may hold.
const MAX_BUCKETS: i64 = 1000;
const TOP_DEFAULT: i64 = 10;
const TOP_MAX: i64 = 100;

#[derive(OpenApi)]
#[openapi(
    info(title = "dure reporting", description = "Reports across services, from their events (admins)."),
    components(schemas(Problem)),
    tags((name = "reporting", description = "Reports"))
)]
struct ApiDoc;

pub fn router() -> OpenApiRouter<Reports> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(summary))
        .routes(routes!(activity))
        .routes(routes!(top_authors))
        .routes(routes!(rebuild, rebuild_status))
}

/// `as_of`: the last position of each producer's feed the answer includes.
type AsOf = BTreeMap<String, i64>;

#[derive(Debug, Serialize, ToSchema)]
pub struct Summary {
    users: i64,
    postings: i64,
    comments: i64,
    notices: i64,
    generation: i64,
    as_of: AsOf,
}

/// Totals of users, postings, comments and notices.
#[utoipa::path(get, path = "/api/reports/summary", tag = "reporting", security(("bearer" = [])),
    responses((status = 200, body = Summary),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn summary(
    State(reports): State<Reports>,
    claims: Claims,
) -> Result<axum::Json<Summary>, ApiError> {
    claims.require(Role::Admin)?;
    let mut tx = store::snapshot(&reports.db).await?;
    let totals = store::totals(&mut tx).await?;
    Ok(axum::Json(Summary {
        users: totals.users,
        postings: totals.postings,
        comments: totals.comments,
        notices: totals.notices,
        generation: totals.generation,
        as_of: store::as_of(&mut tx).await?,
    }))
}

/// `?from=&to=&bucket=`
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ActivityQuery {
    /// Default: 30 days (day) or 48 hours (hour) before `to`.
    #[param(schema_with = time_schema)]
    from: Option<String>,
    /// Exclusive; default: now. Of a longer range, the last 1000 buckets.
    #[param(schema_with = time_schema)]
    to: Option<String>,
    #[param(schema_with = bucket_schema)]
    bucket: Option<String>,
}

fn time_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .examples([serde_json::json!("2026-12-01T00:00:00Z")])
        .build()
}

fn bucket_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["day", "hour"]))
        .description(Some("default `day`"))
        .build()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Activity {
    bucket: &'static str,
    buckets: Vec<Bucket>,
    as_of: AsOf,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Bucket {
    start: String,
    signups: i64,
    postings: i64,
    comments: i64,
}

/// Sign-ups, postings and comments per day or hour in `[from, to)`.
#[utoipa::path(get, path = "/api/reports/activity", tag = "reporting", security(("bearer" = [])),
    params(ActivityQuery),
    responses((status = 200, body = Activity),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn activity(
    State(reports): State<Reports>,
    claims: Claims,
    Query(query): Query<ActivityQuery>,
) -> Result<axum::Json<Activity>, ApiError> {
    claims.require(Role::Admin)?;
    let (name, step, width) = match query.bucket.as_deref().unwrap_or("day") {
        "day" => ("day", Duration::DAY, 10),
        "hour" => ("hour", Duration::HOUR, 13),
        _ => return Err(ApiError::BadRequest("`bucket` must be day or hour".into())),
    };
    let default_span = if name == "day" {
        Duration::days(30)
    } else {
        Duration::hours(48)
    };
    let (from, to) = range(query.from.as_deref(), query.to.as_deref(), default_span)?;
    // Like a page size above the limit, a longer range is cut (to its end).
    let last = to
        .checked_sub(step * (MAX_BUCKETS - 1) as i32)
        .unwrap_or(from);
    let from = truncate(from.max(last), step);
    let (from_text, to_text) = (clock::format(from), clock::format(to));
    let mut tx = store::snapshot(&reports.db).await?;
    let mut counts = Vec::new();
    for table in [Table::Signups, Table::Postings, Table::Comments] {
        counts.push(store::counts_by_bucket(&mut tx, table, width, &from_text, &to_text).await?);
    }
    let mut buckets = Vec::new();
    let mut start = from;
    while start < to {
        let key = &clock::format(start)[..width];
        let count = |i: usize| counts[i].get(key).copied().unwrap_or(0);
        buckets.push(Bucket {
            start: rfc3339(start),
            signups: count(0),
            postings: count(1),
            comments: count(2),
        });
        start += step;
    }
    Ok(axum::Json(Activity {
        bucket: name,
        buckets,
        as_of: store::as_of(&mut tx).await?,
    }))
}

/// `?from=&to=&limit=`
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TopQuery {
    /// Default: the beginning.
    #[param(schema_with = time_schema)]
    from: Option<String>,
    /// Exclusive; default: now.
    #[param(schema_with = time_schema)]
    to: Option<String>,
    #[param(schema_with = top_limit_schema)]
    limit: Option<String>,
}

fn top_limit_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1))
        .maximum(Some(TOP_MAX))
        .description(Some(format!("default {TOP_DEFAULT}")))
        .build()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TopAuthors {
    items: Vec<Author>,
    as_of: AsOf,
}

/// Authors by postings plus comments in `[from, to)`.
#[utoipa::path(get, path = "/api/reports/top-authors", tag = "reporting", security(("bearer" = [])),
    params(TopQuery),
    responses((status = 200, body = TopAuthors),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn top_authors(
    State(reports): State<Reports>,
    claims: Claims,
    Query(query): Query<TopQuery>,
) -> Result<axum::Json<TopAuthors>, ApiError> {
    claims.require(Role::Admin)?;
    let limit = match query.limit.as_deref() {
        None => TOP_DEFAULT,
        Some(raw) => match raw.parse::<i64>() {
            Ok(n) if (1..=TOP_MAX).contains(&n) && raw.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "`limit` must be a whole number from 1 to {TOP_MAX}"
                )));
            }
        },
    };
    let (from, to) = range(
        query.from.as_deref(),
        query.to.as_deref(),
        // "Since the beginning" when no `from` is given.
        Duration::days(365 * 1000),
    )?;
    let mut tx = store::snapshot(&reports.db).await?;
    let items =
        store::top_authors(&mut tx, &clock::format(from), &clock::format(to), limit).await?;
    Ok(axum::Json(TopAuthors {
        items,
        as_of: store::as_of(&mut tx).await?,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RebuildStarted {
    generation: i64,
}

/// Rebuilds the read model by replaying every producer from position 0.
#[utoipa::path(post, path = "/api/reports/rebuild", tag = "reporting", security(("bearer" = [])),
    responses((status = 202, body = RebuildStarted),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 409, body = Problem, content_type = "application/problem+json"),
              (status = 503, body = Problem, content_type = "application/problem+json")))]
pub async fn rebuild(
    State(reports): State<Reports>,
    claims: Claims,
) -> Result<(StatusCode, axum::Json<RebuildStarted>), ApiError> {
    claims.require(Role::Admin)?;
    let generation = reports.rebuilder.start().await?;
    tracing::info!(generation, admin = %claims.sub, "rebuild requested");
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(RebuildStarted { generation }),
    ))
}

/// Whether a rebuild runs, and how far it is.
#[utoipa::path(get, path = "/api/reports/rebuild", tag = "reporting", security(("bearer" = [])),
    responses((status = 200, body = Status),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn rebuild_status(
    State(reports): State<Reports>,
    claims: Claims,
) -> Result<axum::Json<Status>, ApiError> {
    claims.require(Role::Admin)?;
    Ok(axum::Json(crate::rebuild::status(&reports.db).await?))
}

/// `[from, to)` from the query: `to` defaults to now, `from` to `span` before.
fn range(
    from: Option<&str>,
    to: Option<&str>,
    span: Duration,
) -> Result<(OffsetDateTime, OffsetDateTime), ApiError> {
    let parse = |name: &str, text: &str| {
        clock::parse(text).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "`{name}` must be an RFC 3339 time such as 2026-12-01T00:00:00Z"
            ))
        })
    };
    let to = match to {
        Some(text) => parse("to", text)?,
        None => OffsetDateTime::now_utc(),
    };
    let from = match from {
        Some(text) => parse("from", text)?,
        None => to.checked_sub(span).unwrap_or(OffsetDateTime::UNIX_EPOCH),
    };
    // `from` at or after `to` is an empty range, answered as one.
    Ok((from.min(to), to))
}

/// The start of the bucket holding `at`.
fn truncate(at: OffsetDateTime, step: Duration) -> OffsetDateTime {
    let at = at.to_offset(time::UtcOffset::UTC);
    let seconds = at.unix_timestamp();
    let step = step.whole_seconds();
    OffsetDateTime::from_unix_timestamp(seconds - seconds.rem_euclid(step)).unwrap_or(at)
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
