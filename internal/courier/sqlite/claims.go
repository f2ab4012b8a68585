package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"lastmile/internal/courier"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/database"
)

// loadClaims returns the claims of courier id, ordered by ClaimedAt then TaskID.
func loadClaims(ctx context.Context, q querier, id string) ([]courier.Claim, error) {
	rows, err := q.QueryContext(ctx, `
		SELECT task_id, claimed_at, expected_release FROM claims
		WHERE courier_id = ? ORDER BY claimed_at, task_id`, id)
	if err != nil {
		return nil, fmt.Errorf("load claims of courier %s: %w", id, err)
	}
	defer rows.Close()
	var out []courier.Claim
	for rows.Next() {
		c := courier.Claim{CourierID: id}
		var claimed, release int64
		if err := rows.Scan(&c.TaskID, &claimed, &release); err != nil {
			return nil, fmt.Errorf("load claims of courier %s: %w", id, err)
		}
		c.ClaimedAt, c.ExpectedRelease = fromMicros(claimed), fromMicros(release)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load claims of courier %s: %w", id, err)
	}
	return out, nil
}

// ClaimCourier implements courier.Store. The checks and the insert share one BEGIN IMMEDIATE
// transaction, which holds SQLite's write lock from the first read: concurrent claims, from this
// process or another, run one after the other and each sees the claims of those before it.
func (s *Store) ClaimCourier(ctx context.Context, c courier.Claim) (already bool, err error) {
	if err := c.CheckStorable(); err != nil {
		return false, err
	}
	err = database.InTx(ctx, s.db, func(tx *sql.Tx) error {
		cur, err := getCourier(ctx, tx, "id", c.CourierID)
		if err != nil {
			return err
		}
		var holder string
		err = tx.QueryRowContext(ctx, `SELECT courier_id FROM claims WHERE task_id = ?`, c.TaskID).Scan(&holder)
		switch {
		case err == nil && holder == c.CourierID:
			// Idempotent by task id: the first claim stands, whatever changed since.
			already = true
			return nil
		case err == nil:
			return apperr.Errorf(apperr.FailedPrecondition, "task %s is claimed on another courier", c.TaskID)
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("look up claim of task %s: %w", c.TaskID, err)
		}
		if err := cur.CheckClaimable(); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `
			INSERT INTO claims (task_id, courier_id, claimed_at, expected_release) VALUES (?, ?, ?, ?)`,
			c.TaskID, c.CourierID, micros(c.ClaimedAt), micros(c.ExpectedRelease))
		if err != nil {
			return mapError(err, fmt.Sprintf("claim courier %s for task %s", c.CourierID, c.TaskID))
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	return already, nil
}

// ReleaseCourier implements courier.Store.
func (s *Store) ReleaseCourier(ctx context.Context, id, taskID string) (released bool, err error) {
	err = database.InTx(ctx, s.db, func(tx *sql.Tx) error {
		if err := courierExists(ctx, tx, id); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM claims WHERE courier_id = ? AND task_id = ?`, id, taskID)
		if err != nil {
			return fmt.Errorf("release task %s from courier %s: %w", taskID, id, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("release task %s from courier %s: %w", taskID, id, err)
		}
		released = n > 0
		return nil
	})
	if err != nil {
		return false, err
	}
	return released, nil
}

// Claims implements courier.Store.
func (s *Store) Claims(ctx context.Context, id string) ([]courier.Claim, error) {
	out, err := loadClaims(ctx, s.db, id)
	if err != nil {
		return nil, err
	}
	// Couriers are never deleted, so checking existence only when there are no claims is not a race.
	if len(out) == 0 {
		if err := courierExists(ctx, s.db, id); err != nil {
			return nil, err
		}
	}
	return out, nil
}
