-- +goose Up
-- ListTasks and WatchTasks of a courier (dispatch.TaskFilter.AnyHolder): the tasks a courier held and no
-- longer holds, because they handed it back or it was moved to another courier (or their claim was
-- refused). tasks.courier_id keeps the current or last holder; a row here is written in the transaction
-- that moves the task away from a holder, so the two together name every courier who ever held a task.
-- Tasks are never deleted.
CREATE TABLE former_holders (
    courier_id TEXT NOT NULL,
    task_id    TEXT NOT NULL,
    PRIMARY KEY (courier_id, task_id)
) STRICT, WITHOUT ROWID;
-- The holders the tasks' histories already name, other than the last one.
INSERT OR IGNORE INTO former_holders (courier_id, task_id)
SELECT json_extract(h.value, '$.CourierID'), t.id
FROM tasks t, json_each(t.doc, '$.History') h
WHERE json_extract(h.value, '$.State') = 'assigned' AND coalesce(json_extract(h.value, '$.CourierID'), '') <> ''
    AND json_extract(h.value, '$.CourierID') IS NOT t.courier_id;

-- +goose Down
DROP TABLE former_holders;
