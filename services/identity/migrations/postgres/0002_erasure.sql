-- Account erasure as a saga (docs/events.md, "The erasure saga"). A deleted
-- account is disabled at once (deleted_at) and erased (email, credentials,
-- names) when every participant has confirmed its own step.
ALTER TABLE users ADD COLUMN deleted_at TEXT COLLATE "C";

CREATE TABLE erasure_sagas (
    user_id         TEXT COLLATE "C" PRIMARY KEY,
    state           TEXT NOT NULL CHECK (state IN ('in_progress', 'completed', 'failed')),
    started_at      TEXT COLLATE "C" NOT NULL,
    completed_at    TEXT COLLATE "C",
    -- After this the saga is failed (an admin may retry it).
    deadline_at     TEXT COLLATE "C" NOT NULL,
    -- Commands sent so far, and when the next is due if steps are pending.
    attempt         BIGINT NOT NULL,
    next_attempt_at TEXT COLLATE "C" NOT NULL
);
CREATE INDEX erasure_sagas_due ON erasure_sagas (state, next_attempt_at);

CREATE TABLE erasure_steps (
    user_id    TEXT COLLATE "C" NOT NULL REFERENCES erasure_sagas (user_id),
    service    TEXT COLLATE "C" NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('pending', 'confirmed')),
    attempts   BIGINT NOT NULL,
    last_error TEXT,
    updated_at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (user_id, service)
);
