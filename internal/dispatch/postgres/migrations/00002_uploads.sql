-- +goose Up
-- Proof uploads (UploadProof): one row per upload. task_id has no foreign key: uploads are checked
-- against the task by the domain when they start and when a command attaches them, and tasks are never
-- deleted.
CREATE TABLE uploads (
    id               text COLLATE "C" NOT NULL PRIMARY KEY,
    task_id          text COLLATE "C" NOT NULL,
    courier_id       text COLLATE "C" NOT NULL,
    kind             text        NOT NULL CHECK (kind IN ('photo', 'signature')),
    content_type     text        NOT NULL,
    size_bytes       bigint      NOT NULL CHECK (size_bytes > 0),
    committed_offset bigint      NOT NULL CHECK (committed_offset BETWEEN 0 AND size_bytes),
    sha256           text        NOT NULL,
    state            text        NOT NULL CHECK (state IN ('in_progress', 'committed', 'rejected', 'expired')),
    signer_name      text        NOT NULL,
    capture_time     timestamptz,
    capture_lat      double precision,
    capture_lng      double precision,
    create_time      timestamptz NOT NULL,
    update_time      timestamptz NOT NULL,
    -- Set while in_progress only.
    expire_time      timestamptz CHECK ((state = 'in_progress') = (expire_time IS NOT NULL)),
    -- The stream holding the writer lease, '' for none, until writer_until.
    writer           text        NOT NULL,
    writer_until     timestamptz,
    -- When a command first cited the committed upload; attached uploads are never discarded.
    attach_time      timestamptz,
    CHECK ((capture_lat IS NULL) = (capture_lng IS NULL))
);
-- The per-task limit counts a task's in-progress uploads.
CREATE INDEX uploads_task ON uploads (task_id, state);
-- The sweeper finds expired in-progress uploads, committed uploads nobody attached, and discarded ones.
CREATE INDEX uploads_expire ON uploads (expire_time) WHERE state = 'in_progress';
CREATE INDEX uploads_unattached ON uploads (update_time) WHERE state = 'committed' AND attach_time IS NULL;
CREATE INDEX uploads_discarded ON uploads (update_time) WHERE state IN ('rejected', 'expired');

-- The bytes of uploads when they are kept in PostgreSQL (blob.Postgres), so that every replica reads
-- and resumes them: one row per stored chunk, at its offset in the file.
CREATE TABLE proof_chunks (
    upload_id text COLLATE "C" NOT NULL,
    "offset"  bigint NOT NULL CHECK ("offset" >= 0),
    data      bytea  NOT NULL,
    PRIMARY KEY (upload_id, "offset")
);

-- +goose Down
DROP TABLE proof_chunks;
DROP TABLE uploads;
