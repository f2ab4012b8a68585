-- +goose Up
-- Times are Unix microseconds (UTC). STRICT tables make SQLite enforce the declared column types, and the
-- CHECK constraints hold the invariants the store relies on even against a hand-written UPDATE.
CREATE TABLE couriers (
    id           TEXT    NOT NULL PRIMARY KEY,
    user_id      TEXT    NOT NULL,
    display_name TEXT    NOT NULL,
    mode         TEXT    NOT NULL CHECK (mode IN ('bicycle', 'scooter', 'car', 'van', 'walking')),
    capacity     INTEGER NOT NULL CHECK (capacity BETWEEN 1 AND 100),
    -- The stored status; busy is derived from the claims and never stored.
    status       TEXT    NOT NULL CHECK (status IN ('offline', 'available', 'on_break')),
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    version      INTEGER NOT NULL,
    CONSTRAINT couriers_user_id_key UNIQUE (user_id)
) STRICT;

-- One row per hour a courier or a dispatcher has set; an hour without a row is unavailable. hour is the
-- start of the slot and always on the hour.
CREATE TABLE availability (
    courier_id TEXT    NOT NULL REFERENCES couriers (id) ON DELETE CASCADE,
    hour       INTEGER NOT NULL CHECK (hour % 3600000000 = 0),
    available  INTEGER NOT NULL CHECK (available IN (0, 1)),
    PRIMARY KEY (courier_id, hour)
) STRICT, WITHOUT ROWID;
-- AvailableAt asks for one hour across many couriers.
CREATE INDEX availability_hour ON availability (hour, courier_id) WHERE available = 1;

-- task_id is the key: a task is claimed on at most one courier, and claiming it again is a no-op.
CREATE TABLE claims (
    task_id          TEXT    NOT NULL PRIMARY KEY,
    courier_id       TEXT    NOT NULL REFERENCES couriers (id) ON DELETE CASCADE,
    claimed_at       INTEGER NOT NULL,
    expected_release INTEGER NOT NULL,
    CHECK (expected_release > claimed_at)
) STRICT;
CREATE INDEX claims_courier ON claims (courier_id, claimed_at, task_id);

-- The latest persisted fix per courier. speed_mps and heading are negative when the device did not know
-- them.
CREATE TABLE locations (
    courier_id      TEXT    NOT NULL PRIMARY KEY REFERENCES couriers (id) ON DELETE CASCADE,
    lat             REAL    NOT NULL,
    lng             REAL    NOT NULL,
    recorded_at     INTEGER NOT NULL,
    accuracy_meters REAL    NOT NULL,
    speed_mps       REAL    NOT NULL,
    heading         REAL    NOT NULL
) STRICT, WITHOUT ROWID;

-- +goose Down
DROP TABLE locations;
DROP TABLE claims;
DROP TABLE availability;
DROP TABLE couriers;
