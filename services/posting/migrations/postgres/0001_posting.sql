-- Postings and their comments. Author names are posting's own copy, taken
-- from the token when written (events keep them current later).
-- Ids and times are TEXT; COLLATE "C" keeps their order bytewise.

CREATE TABLE postings (
    id            TEXT COLLATE "C" PRIMARY KEY,
    title         TEXT NOT NULL,
    body          TEXT NOT NULL,
    author_id     TEXT COLLATE "C" NOT NULL,
    author_name   TEXT NOT NULL,
    created_at    TEXT COLLATE "C" NOT NULL,
    updated_at    TEXT COLLATE "C" NOT NULL,
    comment_count BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX postings_newest ON postings (created_at, id);
CREATE INDEX postings_by_author ON postings (author_id, created_at, id);

CREATE TABLE comments (
    id          TEXT COLLATE "C" PRIMARY KEY,
    posting_id  TEXT COLLATE "C" NOT NULL REFERENCES postings (id) ON DELETE CASCADE,
    body        TEXT NOT NULL,
    author_id   TEXT COLLATE "C" NOT NULL,
    author_name TEXT NOT NULL,
    created_at  TEXT COLLATE "C" NOT NULL
);
CREATE INDEX comments_of_posting ON comments (posting_id, created_at, id);
