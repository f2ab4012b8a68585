-- +goose Up
-- The pickups of the tasks waiting for a courier (PENDING with a back-off), so that a courier who becomes
-- able to take work wakes those near them (dispatch.Store.WaitingNear), and whether any task waits at all
-- (dispatch.Store.AnyWaiting). A task's pickup never changes: it is written once, by CreateTask. Only the
-- open tasks are filled (a finished one never waits again): the rewrite, and the lock the column change
-- holds meanwhile, are bounded by the open tasks (--dispatch-max-open-tasks per customer), not the history.
ALTER TABLE tasks ADD COLUMN pickup_lat double precision, ADD COLUMN pickup_lng double precision;
UPDATE tasks SET pickup_lat = (doc->'Pickup'->'Location'->>'Lat')::double precision,
    pickup_lng = (doc->'Pickup'->'Location'->>'Lng')::double precision
    WHERE state NOT IN ('delivered', 'cancelled', 'failed');
CREATE INDEX tasks_waiting ON tasks (due_time, pickup_lat, pickup_lng) WHERE state = 'pending' AND due_time IS NOT NULL;

-- +goose Down
DROP INDEX tasks_waiting;
ALTER TABLE tasks DROP COLUMN pickup_lng, DROP COLUMN pickup_lat;
