-- Notifications of one user, notices for everyone (one row per notice, not
-- per user), who has read which notice, and notification's own copy of the
-- users it has heard of.

CREATE TABLE users (
    id           TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    deleted      INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE notifications (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    kind       TEXT NOT NULL,
    title      TEXT NOT NULL,
    link       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    read_at    TEXT
);
CREATE INDEX notifications_of_user ON notifications (user_id, created_at, id);

CREATE TABLE notices (
    id         TEXT PRIMARY KEY,
    title      TEXT NOT NULL,
    link       TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX notices_newest ON notices (created_at, id);

CREATE TABLE notice_reads (
    user_id   TEXT NOT NULL,
    notice_id TEXT NOT NULL,
    read_at   TEXT NOT NULL,
    PRIMARY KEY (user_id, notice_id)
);
