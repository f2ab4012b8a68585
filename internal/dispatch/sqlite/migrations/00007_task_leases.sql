-- +goose Up
-- LeaseDue's leases in a narrow table of their own (sqlstore's leaseTable) instead of the tasks'
-- lease_owner and lease_until columns: a task's row holds its document and fills a page of its own, so
-- each lease and each unlease rewrote a page per task into the WAL (a batch of 32 tasks, 32 pages, twice
-- per batch); a batch's rows here share a page or two. A row exists while a replica holds the task's
-- lease (until is Unix microseconds, UTC, as the tasks' times), the unlease deletes it, and Purge deletes
-- those a stopped replica left. No foreign key: tasks are never deleted, and a lease is written only by
-- LeaseDue's pick of existing tasks.
CREATE TABLE task_leases (
    task_id TEXT    NOT NULL PRIMARY KEY,
    owner   TEXT    NOT NULL,
    until   INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
INSERT INTO task_leases (task_id, owner, until)
    SELECT id, lease_owner, lease_until FROM tasks WHERE lease_owner IS NOT NULL AND lease_until IS NOT NULL;
ALTER TABLE tasks DROP COLUMN lease_owner;
ALTER TABLE tasks DROP COLUMN lease_until;

-- +goose Down
ALTER TABLE tasks ADD COLUMN lease_owner TEXT;
ALTER TABLE tasks ADD COLUMN lease_until INTEGER;
UPDATE tasks SET lease_owner = l.owner, lease_until = l.until FROM task_leases l WHERE l.task_id = tasks.id;
DROP TABLE task_leases;
