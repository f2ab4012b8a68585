-- +goose Up
-- The secrets that sign task share links (dispatch.ShareKey), shared by every replica. The first is
-- created on first use; the newest (highest id) signs new links, and every key verifies the links it
-- signed, so a newer key can be added without breaking links in flight. create_time is Unix microseconds
-- (UTC).
CREATE TABLE share_keys (
    id          INTEGER NOT NULL PRIMARY KEY CHECK (id BETWEEN 1 AND 4294967295),
    secret      BLOB    NOT NULL CHECK (length(secret) >= 32),
    create_time INTEGER NOT NULL
) STRICT;

-- +goose Down
DROP TABLE share_keys;
