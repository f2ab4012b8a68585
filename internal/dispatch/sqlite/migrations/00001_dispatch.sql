-- +goose Up
-- Times are Unix microseconds (UTC), as database.Dialect.Time stores them. STRICT tables make SQLite
-- enforce the declared column types. Each task is stored whole in doc (encoding/json of dispatch.Task);
-- the other columns copy what the store queries by, and are written with doc in every statement.
CREATE TABLE tasks (
    id               TEXT    NOT NULL PRIMARY KEY,
    state            TEXT    NOT NULL CHECK (state IN ('pending', 'offered', 'assigned', 'picked_up', 'delivered', 'cancelled', 'failed', 'unassignable')),
    customer_id      TEXT    NOT NULL,
    -- The holder from ASSIGNED on; NULL before.
    courier_id       TEXT,
    -- The courier of the open offer while OFFERED; NULL otherwise.
    offer_courier_id TEXT,
    -- dispatch.Priority.Rank(): higher is worked first.
    priority_rank    INTEGER NOT NULL,
    create_time      INTEGER NOT NULL,
    update_time      INTEGER NOT NULL,
    -- When the engine must look at the task next; NULL when it need not.
    due_time         INTEGER,
    -- The replica working the task, until lease_until (see LeaseDue); NULL when none.
    lease_owner      TEXT,
    lease_until      INTEGER,
    created_by       TEXT    NOT NULL,
    -- NULL when the request had no id: such requests are never deduplicated.
    request_id       TEXT,
    version          INTEGER NOT NULL CHECK (version >= 1),
    doc              TEXT    NOT NULL,
    CONSTRAINT tasks_request_key UNIQUE (created_by, request_id)
) STRICT;
-- ListTasks: newest first, optionally by state, customer or courier.
CREATE INDEX tasks_list ON tasks (create_time DESC, id DESC);
CREATE INDEX tasks_state_list ON tasks (state, create_time DESC, id DESC);
CREATE INDEX tasks_customer_list ON tasks (customer_id, create_time DESC, id DESC);
CREATE INDEX tasks_courier_list ON tasks (courier_id, create_time DESC, id DESC) WHERE courier_id IS NOT NULL;
-- The work queue (LeaseDue, WakePending).
CREATE INDEX tasks_due ON tasks (due_time, priority_rank DESC, create_time) WHERE due_time IS NOT NULL;
-- OfferedTasks, OfferOpen.
CREATE INDEX tasks_offer_courier ON tasks (offer_courier_id) WHERE offer_courier_id IS NOT NULL;
-- HeldTasks.
CREATE INDEX tasks_courier_state ON tasks (courier_id, state) WHERE courier_id IS NOT NULL;

-- Every offer ever made, for TaskByOffer; the offer itself lives in its task's doc.
CREATE TABLE offers (
    offer_id   TEXT NOT NULL PRIMARY KEY,
    task_id    TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    courier_id TEXT NOT NULL
) STRICT;

-- The engine's decisions (dispatch.Decision as JSON in doc), newest first per task.
CREATE TABLE decisions (
    id          TEXT    NOT NULL PRIMARY KEY,
    task_id     TEXT    NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    decide_time INTEGER NOT NULL,
    doc         TEXT    NOT NULL
) STRICT;
CREATE INDEX decisions_task ON decisions (task_id, decide_time DESC, id DESC);

-- Couriers' session logs. cursor is the sequence number of the dispatch.delivery event appended in the
-- same transaction, so cursors increase in commit order.
CREATE TABLE deliveries (
    courier_id  TEXT    NOT NULL,
    cursor      INTEGER NOT NULL,
    kind        TEXT    NOT NULL CHECK (kind IN ('offer', 'offer_closed', 'task')),
    task_id     TEXT    NOT NULL,
    offer_id    TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    create_time INTEGER NOT NULL,
    PRIMARY KEY (courier_id, cursor)
) STRICT, WITHOUT ROWID;
CREATE INDEX deliveries_create_time ON deliveries (create_time);

-- One session record per courier that ever opened a session.
CREATE TABLE sessions (
    courier_id   TEXT    NOT NULL PRIMARY KEY,
    session_id   TEXT    NOT NULL,
    epoch        INTEGER NOT NULL,
    acked        INTEGER NOT NULL,
    replica      TEXT    NOT NULL,
    -- NULL before the first heartbeat.
    heartbeat    INTEGER,
    is_open      INTEGER NOT NULL CHECK (is_open IN (0, 1)),
    app_version  TEXT    NOT NULL,
    -- JSON array of strings.
    capabilities TEXT    NOT NULL
) STRICT;

-- Final outcomes of courier commands, for idempotency. error is dispatch.CommandError as JSON, NULL for
-- a success.
CREATE TABLE commands (
    courier_id  TEXT    NOT NULL,
    command_id  TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    task_id     TEXT    NOT NULL,
    error       TEXT,
    create_time INTEGER NOT NULL,
    PRIMARY KEY (courier_id, command_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX commands_create_time ON commands (create_time);

-- +goose Down
DROP TABLE commands;
DROP TABLE sessions;
DROP TABLE deliveries;
DROP TABLE decisions;
DROP TABLE offers;
DROP TABLE tasks;
