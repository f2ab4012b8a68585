-- +goose Up
-- seq is drawn at insert time, which is not commit order by itself: eventlog.Append takes an advisory
-- lock per schema first, held until commit, so appending transactions commit in seq order.
CREATE TABLE event_log (
    seq        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic      text        NOT NULL,
    key        text        NOT NULL,
    payload    bytea       NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX event_log_created_at ON event_log (created_at);

-- One row: every event with seq <= pruned_through has been deleted by retention.
CREATE TABLE event_log_state (
    id             integer PRIMARY KEY CHECK (id = 1),
    pruned_through bigint  NOT NULL
);
INSERT INTO event_log_state (id, pruned_through) VALUES (1, 0);

-- +goose Down
DROP TABLE event_log_state;
DROP TABLE event_log;
