-- Browser sessions. The cookie's token is never stored, only its SHA-256
-- (hex); with it the user's tokens from identity, the session's CSRF token,
-- when the access token expires and when to refresh it, and when the session
-- expires (Unix seconds). refreshing_since marks a refresh in progress, so
-- that two requests of one session never use its single-use refresh token
-- twice.
CREATE TABLE sessions (
    token_hash        TEXT COLLATE "C" PRIMARY KEY,
    user_id           TEXT COLLATE "C" NOT NULL,
    access_token      TEXT NOT NULL,
    refresh_token     TEXT NOT NULL,
    access_expires_at BIGINT NOT NULL,
    refresh_at        BIGINT NOT NULL,
    csrf              TEXT NOT NULL,
    refreshing_since  BIGINT,
    created_at        TEXT COLLATE "C" NOT NULL,
    expires_at        BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expiry ON sessions (expires_at);
