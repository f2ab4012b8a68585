-- +goose Up
-- HeldTasks and the held part of CourierStates: the index by holder and state now carries each task's id
-- and version too, which is all that part reads, so it never visits the table (one row lookup per held
-- task, each on a page of its own: the documents make the rows large). It replaces tasks_courier_state:
-- the same rows, and its columns come first. Every UPDATE of a task sets courier_id and state, so the
-- entry of a held task was rewritten by each of its updates already; a wider entry is the only new cost.
CREATE INDEX tasks_courier_held ON tasks (courier_id, state, id, version) WHERE courier_id IS NOT NULL;
DROP INDEX tasks_courier_state;

-- +goose Down
CREATE INDEX tasks_courier_state ON tasks (courier_id, state) WHERE courier_id IS NOT NULL;
DROP INDEX tasks_courier_held;
