package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"lastmile/internal/courier"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/database"
)

// loadClaims returns the claims of courier id, ordered by ClaimedAt then TaskID.
func loadClaims(ctx context.Context, q querier, id string) ([]courier.Claim, error) {
	rows, err := q.Query(ctx, `
		SELECT task_id, claimed_at, expected_release FROM claims
		WHERE courier_id = $1 ORDER BY claimed_at, task_id`, id)
	if err != nil {
		return nil, mapError(err, "load claims of courier "+id)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (courier.Claim, error) {
		c := courier.Claim{CourierID: id}
		err := row.Scan(&c.TaskID, &c.ClaimedAt, &c.ExpectedRelease)
		c.ClaimedAt, c.ExpectedRelease = c.ClaimedAt.UTC(), c.ExpectedRelease.UTC()
		return c, err
	})
	if err != nil {
		return nil, mapError(err, "load claims of courier "+id)
	}
	return out, nil
}

// ClaimCourier implements courier.Store. The courier's row lock serialises claims on one courier, so
// the capacity check and the insert are atomic with respect to them. Two claims of one task on
// different couriers hold different locks; the task_id key settles that race: the later insert waits
// for the earlier transaction and, once it commits, inserts nothing.
func (s *Store) ClaimCourier(ctx context.Context, c courier.Claim) (already bool, err error) {
	if err := c.CheckStorable(); err != nil {
		return false, err
	}
	err = database.InPgxTx(ctx, s.pool, func(tx pgx.Tx) error {
		cur, err := lockCourier(ctx, tx, c.CourierID)
		if err != nil {
			return err
		}
		var holder string
		err = tx.QueryRow(ctx, `SELECT courier_id FROM claims WHERE task_id = $1`, c.TaskID).Scan(&holder)
		switch {
		case err == nil && holder == c.CourierID:
			// Idempotent by task id: the first claim stands, whatever changed since.
			already = true
			return nil
		case err == nil:
			return apperr.Errorf(apperr.FailedPrecondition, "task %s is claimed on another courier", c.TaskID)
		case !errors.Is(err, pgx.ErrNoRows):
			return mapError(err, "look up claim of task "+c.TaskID)
		}
		if err := cur.CheckClaimable(); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `
			INSERT INTO claims (task_id, courier_id, claimed_at, expected_release) VALUES ($1, $2, $3, $4)
			ON CONFLICT (task_id) DO NOTHING`,
			c.TaskID, c.CourierID, ts(c.ClaimedAt), ts(c.ExpectedRelease))
		if err != nil {
			return mapError(err, fmt.Sprintf("claim courier %s for task %s", c.CourierID, c.TaskID))
		}
		if tag.RowsAffected() == 0 {
			// Another courier's claim of the task committed after the look-up above (the same courier's
			// cannot: it would have needed the lock this transaction holds).
			return apperr.Errorf(apperr.FailedPrecondition, "task %s is claimed on another courier", c.TaskID)
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	return already, nil
}

// ReleaseCourier implements courier.Store. Deleting needs no row lock: fewer claims never break a rule.
func (s *Store) ReleaseCourier(ctx context.Context, id, taskID string) (released bool, err error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM claims WHERE courier_id = $1 AND task_id = $2`, id, taskID)
	if err != nil {
		return false, mapError(err, fmt.Sprintf("release task %s from courier %s", taskID, id))
	}
	if tag.RowsAffected() > 0 {
		return true, nil
	}
	// Couriers are never deleted, so checking existence after the delete found nothing is not a race.
	if err := courierExists(ctx, s.pool, id); err != nil {
		return false, err
	}
	return false, nil
}

// Claims implements courier.Store.
func (s *Store) Claims(ctx context.Context, id string) ([]courier.Claim, error) {
	out, err := loadClaims(ctx, s.pool, id)
	if err != nil {
		return nil, err
	}
	// Couriers are never deleted, so checking existence only when there are no claims is not a race.
	if len(out) == 0 {
		if err := courierExists(ctx, s.pool, id); err != nil {
			return nil, err
		}
		return nil, nil
	}
	return out, nil
}
