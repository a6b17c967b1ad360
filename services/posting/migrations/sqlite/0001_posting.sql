-- Postings and their comments. Author names are posting's own copy, taken
-- from the token when written (events keep them current later).

CREATE TABLE postings (
    id            TEXT PRIMARY KEY,
    title         TEXT NOT NULL,
    body          TEXT NOT NULL,
    author_id     TEXT NOT NULL,
    author_name   TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    comment_count INTEGER NOT NULL DEFAULT 0
);
-- Keyset pagination, newest first, overall and per author.
CREATE INDEX postings_newest ON postings (created_at, id);
CREATE INDEX postings_by_author ON postings (author_id, created_at, id);

CREATE TABLE comments (
    id          TEXT PRIMARY KEY,
    posting_id  TEXT NOT NULL REFERENCES postings (id) ON DELETE CASCADE,
    body        TEXT NOT NULL,
    author_id   TEXT NOT NULL,
    author_name TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX comments_of_posting ON comments (posting_id, created_at, id);
