-- +goose Up
-- ListTasks and WatchTasks of a courier (dispatch.TaskFilter.AnyHolder): the tasks a courier held and no
-- longer holds, because they handed it back or it was moved to another courier (or their claim was
-- refused). tasks.courier_id keeps the current or last holder; a row here is written in the transaction
-- that moves the task away from a holder, so the two together name every courier who ever held a task.
-- Tasks are never deleted.
CREATE TABLE former_holders (
    courier_id text COLLATE "C" NOT NULL,
    task_id    text COLLATE "C" NOT NULL,
    PRIMARY KEY (courier_id, task_id)
);
-- The holders the tasks' histories already name, other than the last one.
INSERT INTO former_holders (courier_id, task_id)
SELECT DISTINCT h->>'CourierID', t.id
FROM tasks t,
    json_array_elements(CASE WHEN json_typeof(t.doc->'History') = 'array' THEN t.doc->'History' ELSE '[]'::json END) h
WHERE h->>'State' = 'assigned' AND coalesce(h->>'CourierID', '') <> ''
    AND (h->>'CourierID') IS DISTINCT FROM t.courier_id
ON CONFLICT DO NOTHING;

-- +goose Down
DROP TABLE former_holders;
