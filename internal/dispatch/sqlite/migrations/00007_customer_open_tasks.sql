-- +goose Up
-- How many open tasks (every state but delivered, cancelled and failed) each customer has, for
-- CreateTask's cap (dispatch.Options.MaxOpenTasks): one row to update per create instead of a count of
-- the customer's tasks. CreateTask adds one, under its cap, in the transaction that inserts the task; the
-- trigger takes one off when a task reaches a final state, in the statement that writes it. Tasks are
-- never deleted.
CREATE TABLE customer_open_tasks (
    customer_id TEXT NOT NULL PRIMARY KEY,
    open_tasks  INTEGER NOT NULL,
    -- The cap the latest create was made under: a create that would count more fails this check, and
    -- with it the whole transaction.
    max_open    INTEGER NOT NULL,
    CONSTRAINT customer_open_tasks_cap CHECK (open_tasks <= max_open)
) STRICT, WITHOUT ROWID;
INSERT INTO customer_open_tasks (customer_id, open_tasks, max_open)
    SELECT customer_id, count(*), 9223372036854775807 FROM tasks WHERE state NOT IN ('delivered', 'cancelled', 'failed') GROUP BY customer_id;

-- +goose StatementBegin
CREATE TRIGGER tasks_count_finished AFTER UPDATE OF state ON tasks FOR EACH ROW
    WHEN OLD.state NOT IN ('delivered', 'cancelled', 'failed') AND NEW.state IN ('delivered', 'cancelled', 'failed')
BEGIN
    UPDATE customer_open_tasks SET open_tasks = open_tasks - 1 WHERE customer_id = OLD.customer_id;
END;
-- +goose StatementEnd

-- +goose Down
DROP TRIGGER tasks_count_finished;
DROP TABLE customer_open_tasks;
