-- +goose Up
-- Tables live in the service's schema (the search_path set by database.MigratePostgres). COLLATE "C" on
-- the ids makes keyset pagination follow byte order, as in SQLite, whatever the database's default
-- collation. Each task is stored whole in doc (encoding/json of dispatch.Task); the other columns copy
-- what the store queries by, and are written with doc in every statement.
CREATE TABLE tasks (
    id               text COLLATE "C" NOT NULL PRIMARY KEY,
    state            text        NOT NULL CHECK (state IN ('pending', 'offered', 'assigned', 'picked_up', 'delivered', 'cancelled', 'failed', 'unassignable')),
    customer_id      text COLLATE "C" NOT NULL,
    -- The holder from ASSIGNED on; NULL before.
    courier_id       text COLLATE "C",
    -- The courier of the open offer while OFFERED; NULL otherwise.
    offer_courier_id text COLLATE "C",
    -- dispatch.Priority.Rank(): higher is worked first.
    priority_rank    integer     NOT NULL,
    create_time      timestamptz NOT NULL,
    update_time      timestamptz NOT NULL,
    -- When the engine must look at the task next; NULL when it need not.
    due_time         timestamptz,
    -- The replica working the task, until lease_until (see LeaseDue); NULL when none.
    lease_owner      text,
    lease_until      timestamptz,
    created_by       text COLLATE "C" NOT NULL,
    -- NULL when the request had no id: such requests are never deduplicated.
    request_id       text COLLATE "C",
    version          bigint      NOT NULL CHECK (version >= 1),
    doc              jsonb       NOT NULL,
    CONSTRAINT tasks_request_key UNIQUE (created_by, request_id)
);
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
    offer_id   text COLLATE "C" NOT NULL PRIMARY KEY,
    task_id    text COLLATE "C" NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    courier_id text COLLATE "C" NOT NULL
);

-- The engine's decisions (dispatch.Decision as JSON in doc), newest first per task.
CREATE TABLE decisions (
    id          text COLLATE "C" NOT NULL PRIMARY KEY,
    task_id     text COLLATE "C" NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    decide_time timestamptz NOT NULL,
    doc         jsonb       NOT NULL
);
CREATE INDEX decisions_task ON decisions (task_id, decide_time DESC, id DESC);

-- Couriers' session logs. cursor is the sequence number of the dispatch.delivery event appended in the
-- same transaction; sqllog.Append makes sequence order commit order, so cursors increase in commit order.
CREATE TABLE deliveries (
    courier_id  text COLLATE "C" NOT NULL,
    cursor      bigint      NOT NULL,
    kind        text        NOT NULL CHECK (kind IN ('offer', 'offer_closed', 'task')),
    task_id     text        NOT NULL,
    offer_id    text        NOT NULL,
    reason      text        NOT NULL,
    create_time timestamptz NOT NULL,
    PRIMARY KEY (courier_id, cursor)
);
CREATE INDEX deliveries_create_time ON deliveries (create_time);

-- One session record per courier that ever opened a session.
CREATE TABLE sessions (
    courier_id   text COLLATE "C" NOT NULL PRIMARY KEY,
    session_id   text        NOT NULL,
    epoch        bigint      NOT NULL,
    acked        bigint      NOT NULL,
    replica      text        NOT NULL,
    -- NULL before the first heartbeat.
    heartbeat    timestamptz,
    is_open      boolean     NOT NULL,
    app_version  text        NOT NULL,
    -- JSON array of strings.
    capabilities jsonb       NOT NULL
);

-- Final outcomes of courier commands, for idempotency. error is dispatch.CommandError as JSON, NULL for
-- a success.
CREATE TABLE commands (
    courier_id  text COLLATE "C" NOT NULL,
    command_id  text COLLATE "C" NOT NULL,
    fingerprint text        NOT NULL,
    task_id     text        NOT NULL,
    error       jsonb,
    create_time timestamptz NOT NULL,
    PRIMARY KEY (courier_id, command_id)
);
CREATE INDEX commands_create_time ON commands (create_time);

-- +goose Down
DROP TABLE commands;
DROP TABLE sessions;
DROP TABLE deliveries;
DROP TABLE decisions;
DROP TABLE offers;
DROP TABLE tasks;
