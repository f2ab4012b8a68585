-- +goose Up
-- FinishedTasks (a WatchTasks resume, changed_since): the tasks that reached a final state, the most
-- recently updated first. Partial, so that the writes of open tasks, which change update_time every time,
-- do not touch it; a task enters it once, when it finishes.
CREATE INDEX tasks_finished ON tasks (update_time DESC, id DESC) WHERE state IN ('delivered', 'cancelled', 'failed');

-- +goose Down
DROP INDEX tasks_finished;
