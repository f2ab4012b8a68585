-- +goose Up
-- LeaseDue's pick in the order it takes tasks (highest priority, then oldest, then by id): the pick walks
-- it and stops at its LIMIT, instead of reading every due task through tasks_due and sorting them.
CREATE INDEX tasks_due_order ON tasks (priority_rank DESC, create_time, id) WHERE due_time IS NOT NULL;

-- +goose Down
DROP INDEX tasks_due_order;
