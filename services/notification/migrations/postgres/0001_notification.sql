-- Notifications of one user, notices for everyone (one row per notice, not
-- per user), who has read which notice, and notification's own copy of the
-- users it has heard of.

CREATE TABLE users (
    id           TEXT COLLATE "C" PRIMARY KEY,
    display_name TEXT NOT NULL,
    deleted      BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE notifications (
    id         TEXT COLLATE "C" PRIMARY KEY,
    user_id    TEXT COLLATE "C" NOT NULL,
    kind       TEXT NOT NULL,
    title      TEXT NOT NULL,
    link       TEXT NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL,
    read_at    TEXT
);
CREATE INDEX notifications_of_user ON notifications (user_id, created_at, id);

CREATE TABLE notices (
    id         TEXT COLLATE "C" PRIMARY KEY,
    title      TEXT NOT NULL,
    link       TEXT NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL
);
CREATE INDEX notices_newest ON notices (created_at, id);

CREATE TABLE notice_reads (
    user_id   TEXT COLLATE "C" NOT NULL,
    notice_id TEXT COLLATE "C" NOT NULL,
    read_at   TEXT NOT NULL,
    PRIMARY KEY (user_id, notice_id)
);
