-- Accounts, refresh tokens, signing keys and login failures of identity.
-- Ids and times are TEXT (see the chassis db module); COLLATE "C" keeps their
-- order bytewise whatever the server's locale.

CREATE TABLE users (
    id            TEXT COLLATE "C" PRIMARY KEY,
    username      TEXT NOT NULL,
    email         TEXT NOT NULL,
    display_name  TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('user', 'admin')),
    created_at    TEXT COLLATE "C" NOT NULL,
    updated_at    TEXT COLLATE "C" NOT NULL,
    CONSTRAINT users_username_key UNIQUE (username),
    CONSTRAINT users_email_key UNIQUE (email)
);

CREATE TABLE refresh_tokens (
    token_hash TEXT COLLATE "C" PRIMARY KEY,
    family_id  TEXT COLLATE "C" NOT NULL,
    user_id    TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TEXT COLLATE "C" NOT NULL,
    expires_at TEXT COLLATE "C" NOT NULL,
    used_at    TEXT COLLATE "C",
    revoked_at TEXT COLLATE "C"
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

CREATE TABLE signing_keys (
    generation  BIGINT PRIMARY KEY,
    kid         TEXT NOT NULL UNIQUE,
    private_key BYTEA NOT NULL,
    public_key  BYTEA NOT NULL,
    created_at  TEXT COLLATE "C" NOT NULL,
    retired_at  TEXT COLLATE "C"
);

CREATE TABLE login_failures (
    subject   TEXT COLLATE "C" NOT NULL,
    failed_at TEXT COLLATE "C" NOT NULL
);
CREATE INDEX login_failures_subject ON login_failures (subject, failed_at);
