-- +goose Up
-- Claims and releases ordered by generation (ClaimCourierRequest.generation): a claim keeps the highest
-- generation it was claimed with (0: none), and claim_releases keeps, per courier and task, the highest
-- generation released, until keep_until, so that a claim landing after its release (its caller timed
-- out, yet its transaction committed) is refused. A release purges the courier's rows past keep_until.
ALTER TABLE claims ADD COLUMN generation INTEGER NOT NULL DEFAULT 0 CHECK (generation >= 0);

CREATE TABLE claim_releases (
    courier_id TEXT    NOT NULL REFERENCES couriers (id) ON DELETE CASCADE,
    task_id    TEXT    NOT NULL,
    generation INTEGER NOT NULL CHECK (generation > 0),
    keep_until INTEGER NOT NULL,
    PRIMARY KEY (courier_id, task_id)
) STRICT, WITHOUT ROWID;

-- +goose Down
DROP TABLE claim_releases;
ALTER TABLE claims DROP COLUMN generation;
