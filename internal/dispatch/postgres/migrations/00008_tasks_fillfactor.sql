-- +goose Up
-- Room on every page of tasks for the new versions of its rows: a lease and its unlease (LeaseDue,
-- Unlease, UnleaseTasks) change only lease_owner and lease_until, which no index holds, so with room on
-- the row's page PostgreSQL makes them heap-only (HOT) updates, which write no index entry. With the
-- pages filled (fillfactor 100, about five rows of 1.5 kB each), 84 % of the updates had to move the
-- row to another page and add an entry to each of the table's indexes. Applies to pages filled from
-- now on.
ALTER TABLE tasks SET (fillfactor = 50);

-- +goose Down
ALTER TABLE tasks RESET (fillfactor);
