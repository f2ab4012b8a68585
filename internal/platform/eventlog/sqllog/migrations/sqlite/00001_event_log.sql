-- +goose Up
-- AUTOINCREMENT: a seq is never reused, even after retention has deleted every row, so a cursor can
-- never come to name a different event. SQLite has one writer at a time, so seq order is commit order.
CREATE TABLE event_log (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    topic      TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    payload    BLOB    NOT NULL,
    -- Unix microseconds (UTC), as database.Dialect.Time stores times in SQLite.
    created_at INTEGER NOT NULL
);
CREATE INDEX event_log_created_at ON event_log (created_at);

-- One row: every event with seq <= pruned_through has been deleted by retention.
CREATE TABLE event_log_state (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    pruned_through INTEGER NOT NULL
);
INSERT INTO event_log_state (id, pruned_through) VALUES (1, 0);

-- +goose Down
DROP TABLE event_log_state;
DROP TABLE event_log;
