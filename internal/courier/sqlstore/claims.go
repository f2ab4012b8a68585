package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

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

// lockCourierAndHolder is lockCourier, and the courier holding task taskID's claim ("" when none), read
// by one statement: one statement fewer per claim (a round trip on PostgreSQL). Where the engine locks
// rows (PostgreSQL) the read follows the lock; on SQLite the transaction holds the write lock from its
// BEGIN, so the read alone is enough.
func (s *Store) lockCourierAndHolder(ctx context.Context, tx *sql.Tx, id, taskID string) (courier.Courier, string, error) {
	if s.e.Lock != "" {
		if err := s.lock(ctx, tx, id); err != nil {
			return courier.Courier{}, "", err
		}
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

// LiveState implements courier.Store. On SQLite one statement reads it all: the courier's row, joined
// with the current hour's slot (at most one row: hours are whole and keyed by courier and hour) and with
// its claims in the order of their index, gives one row per claim (one without a claim when there is
// none) and no row when the courier does not exist; ActiveTasks is the number of claims read. That is
// two statements fewer than GetCourier, Claims and AvailableHours on every refresh (after every claim and
// release). PostgreSQL keeps the three reads: its statements are measured and tuned on their own.
func (s *Store) LiveState(ctx context.Context, id string, hour time.Time) (c courier.Courier, claims []courier.Claim, availNow bool, err error) {
	if s.e.Dialect != database.SQLite {
		return s.liveStateApart(ctx, id, hour)
	}
	h := hourStart(hour)
	found := false
	err = func() error {
		rows, err := s.db.QueryContext(ctx, `
			SELECT c.id, c.user_id, c.display_name, c.mode, c.capacity, c.status, c.created_at, c.updated_at, c.version,
				a.courier_id IS NOT NULL, k.task_id, k.claimed_at, k.expected_release
			FROM couriers c
			LEFT JOIN availability a ON a.courier_id = c.id AND a.hour = $2 AND a.available
			LEFT JOIN claims k ON k.courier_id = c.id
			WHERE c.id = $1
			ORDER BY k.claimed_at, k.task_id`, id, s.time(h))
		if err != nil {
			return err
		}
		defer rows.Close()
		var (
			task  sql.NullString
			claim courier.Claim
			skip  sql.RawBytes
		)
		first := []any{&c.ID, &c.UserID, &c.DisplayName, &c.Mode, &c.Capacity, &c.Status,
			database.ScanTime(&c.CreatedAt), database.ScanTime(&c.UpdatedAt), &c.Version,
			&availNow, &task, database.ScanTime(&claim.ClaimedAt), database.ScanTime(&claim.ExpectedRelease)}
		// The courier's columns repeat on every row: read once, then skipped without a copy.
		rest := append([]any{&skip, &skip, &skip, &skip, &skip, &skip, &skip, &skip, &skip, &skip}, first[10:]...)
		for rows.Next() {
			dest := rest
			if !found {
				dest = first
			}
			if err := rows.Scan(dest...); err != nil {
				return err
			}
			found = true
			if task.Valid { // NULL: the courier, without a claim
				claims = append(claims, courier.Claim{CourierID: id, TaskID: task.String,
					ClaimedAt: claim.ClaimedAt, ExpectedRelease: claim.ExpectedRelease})
			}
		}
		return rows.Err()
	}()
	if err != nil {
		return courier.Courier{}, nil, false, s.e.MapError(err, "read live state of courier "+id)
	}
	if !found {
		return courier.Courier{}, nil, false, courierNotFound(id)
	}
	c.ActiveTasks = len(claims)
	return c, claims, availNow, nil
}

// liveStateApart is LiveState in three reads, each its own snapshot, as the domain made them before.
func (s *Store) liveStateApart(ctx context.Context, id string, hour time.Time) (courier.Courier, []courier.Claim, bool, error) {
	h := hourStart(hour)
	c, err := s.GetCourier(ctx, id)
	if err != nil {
		return courier.Courier{}, nil, false, err
	}
	claims, err := s.Claims(ctx, id)
	if err != nil {
		return courier.Courier{}, nil, false, err
	}
	hours, err := s.AvailableHours(ctx, id, h, h.Add(time.Hour))
	if err != nil {
		return courier.Courier{}, nil, false, err
	}
	return c, claims, len(hours) > 0, nil
}
