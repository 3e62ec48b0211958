-- The todo service's schema: `app db sync` creates what is missing (the service also
-- syncs it at start), `app db reset` starts again. The same SQL for SQLite and PostgreSQL.
CREATE TABLE todos (
    id BIGINT PRIMARY KEY,
    title TEXT NOT NULL CHECK (length(title) > 0),
    done BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX todos_by_done ON todos (done);
INSERT INTO todos (id, title, done) VALUES (1, 'Read the README', TRUE);
