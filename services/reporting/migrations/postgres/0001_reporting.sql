-- reporting's read model, filled only from other services' events. Every
-- row belongs to a generation: the live one answers reads, a rebuild fills
-- the next one from position 0 of every producer and then takes its place.

CREATE TABLE generations (
    gen         BIGINT PRIMARY KEY,
    state       TEXT NOT NULL CHECK (state IN ('live', 'building', 'retired', 'failed')),
    started_at  TEXT COLLATE "C" NOT NULL,
    -- Bumped by the instance filling a building generation; another
    -- instance takes over one whose owner stopped.
    updated_at  TEXT COLLATE "C" NOT NULL,
    owner       TEXT,
    switched_at TEXT COLLATE "C",
    -- Why a rebuild failed.
    error       TEXT
);
-- At most one live and one building generation.
CREATE UNIQUE INDEX generations_one_per_state ON generations (state) WHERE state IN ('live', 'building');
-- The first generation is the live one from the start.
INSERT INTO generations (gen, state, started_at, updated_at) VALUES
    (1, 'live', '1970-01-01T00:00:00.000000Z', '1970-01-01T00:00:00.000000Z');

-- The last position of each producer applied to a generation.
CREATE TABLE positions (
    gen      BIGINT NOT NULL,
    producer TEXT COLLATE "C" NOT NULL,
    position BIGINT NOT NULL,
    PRIMARY KEY (gen, producer)
);

CREATE TABLE users (
    gen           BIGINT NOT NULL,
    user_id       TEXT COLLATE "C" NOT NULL,
    display_name  TEXT NOT NULL,
    registered_at TEXT COLLATE "C" NOT NULL,
    deleted       BIGINT NOT NULL DEFAULT 0,
    erased        BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (gen, user_id)
);
CREATE INDEX users_registered ON users (gen, registered_at);

CREATE TABLE postings (
    gen        BIGINT NOT NULL,
    posting_id TEXT COLLATE "C" NOT NULL,
    author_id  TEXT COLLATE "C" NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (gen, posting_id)
);
CREATE INDEX postings_created ON postings (gen, created_at);

CREATE TABLE comments (
    gen        BIGINT NOT NULL,
    comment_id TEXT COLLATE "C" NOT NULL,
    posting_id TEXT COLLATE "C" NOT NULL,
    author_id  TEXT COLLATE "C" NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (gen, comment_id)
);
CREATE INDEX comments_created ON comments (gen, created_at);
CREATE INDEX comments_of_posting ON comments (gen, posting_id);

CREATE TABLE notices (
    gen        BIGINT NOT NULL,
    notice_id  TEXT COLLATE "C" NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (gen, notice_id)
);
