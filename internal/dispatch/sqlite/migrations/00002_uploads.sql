-- +goose Up
-- Proof uploads (UploadProof): one row per upload, its bytes in the blob store. Times are Unix
-- microseconds (UTC), NULL for "no time". task_id has no foreign key: uploads are checked against the task
-- by the domain when they start and when a command attaches them, and tasks are never deleted.
CREATE TABLE uploads (
    id               TEXT    NOT NULL PRIMARY KEY,
    task_id          TEXT    NOT NULL,
    courier_id       TEXT    NOT NULL,
    kind             TEXT    NOT NULL CHECK (kind IN ('photo', 'signature')),
    content_type     TEXT    NOT NULL,
    size_bytes       INTEGER NOT NULL CHECK (size_bytes > 0),
    committed_offset INTEGER NOT NULL CHECK (committed_offset BETWEEN 0 AND size_bytes),
    sha256           TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('in_progress', 'committed', 'rejected', 'expired')),
    signer_name      TEXT    NOT NULL,
    capture_time     INTEGER,
    capture_lat      REAL,
    capture_lng      REAL,
    create_time      INTEGER NOT NULL,
    update_time      INTEGER NOT NULL,
    -- Set while in_progress only.
    expire_time      INTEGER CHECK ((state = 'in_progress') = (expire_time IS NOT NULL)),
    -- The stream holding the writer lease, '' for none, until writer_until.
    writer           TEXT    NOT NULL,
    writer_until     INTEGER,
    -- When a command first cited the committed upload; attached uploads are never discarded.
    attach_time      INTEGER,
    CHECK ((capture_lat IS NULL) = (capture_lng IS NULL))
) STRICT;
-- The per-task limit counts a task's in-progress uploads.
CREATE INDEX uploads_task ON uploads (task_id, state);
-- The sweeper finds expired in-progress uploads, committed uploads nobody attached, and discarded ones.
CREATE INDEX uploads_expire ON uploads (expire_time) WHERE state = 'in_progress';
CREATE INDEX uploads_unattached ON uploads (update_time) WHERE state = 'committed' AND attach_time IS NULL;
CREATE INDEX uploads_discarded ON uploads (update_time) WHERE state IN ('rejected', 'expired');

-- +goose Down
DROP TABLE uploads;
