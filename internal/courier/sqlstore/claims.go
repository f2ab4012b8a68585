package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"lastmile/internal/courier"
	"lastmile/internal/platform/database"
)

// loadClaims returns the claims of courier id, ordered by ClaimedAt then TaskID.
func (s *Store) loadClaims(ctx context.Context, q querier, id string) ([]courier.Claim, error) {
	rows, err := q.QueryContext(ctx, `
		SELECT task_id, claimed_at, expected_release FROM claims
		WHERE courier_id = $1 ORDER BY claimed_at, task_id`, id)
	if err != nil {
		return nil, s.e.MapError(err, "load claims of courier "+id)
	}
	defer rows.Close()
	var out []courier.Claim
	for rows.Next() {
		c := courier.Claim{CourierID: id}
		if err := rows.Scan(&c.TaskID, database.ScanTime(&c.ClaimedAt), database.ScanTime(&c.ExpectedRelease)); err != nil {
			return nil, s.e.MapError(err, "load claims of courier "+id)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, s.e.MapError(err, "load claims of courier "+id)
	}
	return out, nil
}

// ClaimCourier implements courier.Store.
func (s *Store) ClaimCourier(ctx context.Context, id, taskID string, decide func(c courier.Courier, holder string) (*courier.Claim, error)) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		cur, holder, err := s.lockCourierAndHolder(ctx, tx, id, taskID)
		if err != nil {
			return err
		}
		c, err := decide(cur, holder)
		if err != nil || c == nil {
			return err
		}
		if err := checkClaim(*c, id, taskID); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `
			INSERT INTO claims (task_id, courier_id, claimed_at, expected_release) VALUES ($1, $2, $3, $4)`,
			c.TaskID, c.CourierID, s.time(c.ClaimedAt), s.time(c.ExpectedRelease))
		if err != nil {
			return s.e.MapError(err, fmt.Sprintf("claim courier %s for task %s", id, taskID))
		}
		return nil
	})
}

// lockCourierAndHolder is lockCourier, and the courier holding task taskID's claim ("" when none). Where
// the engine locks rows (PostgreSQL) the courier and the holder are read by one statement after the
// lock: one round trip fewer per claim.
func (s *Store) lockCourierAndHolder(ctx context.Context, tx *sql.Tx, id, taskID string) (courier.Courier, string, error) {
	if s.e.Lock == "" {
		cur, err := s.lockCourier(ctx, tx, id)
		if err != nil {
			return courier.Courier{}, "", err
		}
		var holder string
		err = tx.QueryRowContext(ctx, `SELECT courier_id FROM claims WHERE task_id = $1`, taskID).Scan(&holder)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return courier.Courier{}, "", s.e.MapError(err, "look up claim of task "+taskID)
		}
		return cur, holder, nil
	}
	if err := s.lock(ctx, tx, id); err != nil {
		return courier.Courier{}, "", err
	}
	var (
		c      courier.Courier
		holder sql.NullString
	)
	err := tx.QueryRowContext(ctx, `SELECT `+courierColumns+`, (SELECT courier_id FROM claims WHERE task_id = $2) FROM couriers c WHERE c.id = $1`,
		id, taskID).Scan(&c.ID, &c.UserID, &c.DisplayName, &c.Mode, &c.Capacity, &c.Status,
		database.ScanTime(&c.CreatedAt), database.ScanTime(&c.UpdatedAt), &c.Version, &c.ActiveTasks, &holder)
	if errors.Is(err, sql.ErrNoRows) {
		return courier.Courier{}, "", courierNotFound(id)
	}
	if err != nil {
		return courier.Courier{}, "", s.e.MapError(err, fmt.Sprintf("load courier %s and the claim of task %s", id, taskID))
	}
	return c, holder.String, nil
}

// ReleaseCourier implements courier.Store. Deleting needs no lock: fewer claims never break a rule.
func (s *Store) ReleaseCourier(ctx context.Context, id, taskID string) (released bool, err error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM claims WHERE courier_id = $1 AND task_id = $2`, id, taskID)
	if err != nil {
		return false, s.e.MapError(err, fmt.Sprintf("release task %s from courier %s", taskID, id))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, s.e.MapError(err, fmt.Sprintf("release task %s from courier %s", taskID, id))
	}
	if n > 0 {
		return true, nil
	}
	// Couriers are never deleted, so checking existence after the delete found nothing is not a race.
	return false, s.courierExists(ctx, s.db, id)
}

// Claims implements courier.Store, in one statement as AvailableHours: the courier's row joined with its
// claims gives no row when the courier does not exist and one row without a claim when it has none.
func (s *Store) Claims(ctx context.Context, id string) ([]courier.Claim, error) {
	found := false
	out, err := func() ([]courier.Claim, error) {
		rows, err := s.db.QueryContext(ctx, `
			SELECT k.task_id, k.claimed_at, k.expected_release FROM couriers c
			LEFT JOIN claims k ON k.courier_id = c.id
			WHERE c.id = $1
			ORDER BY k.claimed_at, k.task_id`, id)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var out []courier.Claim
		for rows.Next() {
			var (
				task sql.NullString
				c    = courier.Claim{CourierID: id}
			)
			if err := rows.Scan(&task, database.ScanTime(&c.ClaimedAt), database.ScanTime(&c.ExpectedRelease)); err != nil {
				return nil, err
			}
			found = true
			if task.Valid { // NULL: the courier, without a claim
				c.TaskID = task.String
				out = append(out, c)
			}
		}
		return out, rows.Err()
	}()
	if err != nil {
		return nil, s.e.MapError(err, "load claims of courier "+id)
	}
	if !found {
		return nil, courierNotFound(id)
	}
	return out, nil
}
