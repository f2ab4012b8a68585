-- +goose Up
-- Tables live in the service's schema (the search_path set by database.MigratePostgres). COLLATE "C" on
-- the ids makes keyset pagination follow byte order, whatever the database's default collation, so every
-- store pages alike. The CHECK constraints hold the invariants the store relies on even against a
-- hand-written UPDATE.
CREATE TABLE couriers (
    id           text COLLATE "C" NOT NULL PRIMARY KEY,
    user_id      text COLLATE "C" NOT NULL,
    display_name text        NOT NULL,
    mode         text        NOT NULL CHECK (mode IN ('bicycle', 'scooter', 'car', 'van', 'walking')),
    capacity     integer     NOT NULL CHECK (capacity BETWEEN 1 AND 100),
    -- The stored status; busy is derived from the claims and never stored.
    status       text        NOT NULL CHECK (status IN ('offline', 'available', 'on_break')),
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    version      bigint      NOT NULL,
    CONSTRAINT couriers_user_id_key UNIQUE (user_id)
);

-- One row per hour a courier or a dispatcher has set; an hour without a row is unavailable. hour is the
-- start of the slot and always on the hour in UTC.
CREATE TABLE availability (
    courier_id text COLLATE "C" NOT NULL REFERENCES couriers (id) ON DELETE CASCADE,
    hour       timestamptz NOT NULL CHECK (date_trunc('hour', hour AT TIME ZONE 'UTC') = hour AT TIME ZONE 'UTC'),
    available  boolean     NOT NULL,
    PRIMARY KEY (courier_id, hour)
);
-- AvailableAt asks for one hour across many couriers.
CREATE INDEX availability_hour ON availability (hour, courier_id) WHERE available;

-- task_id is the key: a task is claimed on at most one courier, and claiming it again is a no-op.
CREATE TABLE claims (
    task_id          text COLLATE "C" NOT NULL PRIMARY KEY,
    courier_id       text COLLATE "C" NOT NULL REFERENCES couriers (id) ON DELETE CASCADE,
    claimed_at       timestamptz NOT NULL,
    expected_release timestamptz NOT NULL,
    CHECK (expected_release > claimed_at)
);
CREATE INDEX claims_courier ON claims (courier_id, claimed_at, task_id);

-- The latest persisted fix per courier. speed_mps and heading are negative when the device did not know
-- them.
CREATE TABLE locations (
    courier_id      text COLLATE "C" NOT NULL PRIMARY KEY REFERENCES couriers (id) ON DELETE CASCADE,
    lat             double precision NOT NULL,
    lng             double precision NOT NULL,
    recorded_at     timestamptz      NOT NULL,
    accuracy_meters double precision NOT NULL,
    speed_mps       double precision NOT NULL,
    heading         double precision NOT NULL
);

-- +goose Down
DROP TABLE locations;
DROP TABLE claims;
DROP TABLE availability;
DROP TABLE couriers;
