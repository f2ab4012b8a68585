package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"lastmile/internal/courier"
	"lastmile/internal/platform/apperr"
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

// ClaimCourier implements courier.Store: ClaimCourierLive without its answer.
func (s *Store) ClaimCourier(ctx context.Context, id, taskID string, decide func(c courier.Courier, holder string) (*courier.Claim, error)) error {
	_, err := s.ClaimCourierLive(ctx, id, taskID, time.Time{}, decide)
	return err
}

// ClaimCourierLive implements courier.Store: ClaimCourierHolding with decide given the holder alone.
func (s *Store) ClaimCourierLive(ctx context.Context, id, taskID string, hour time.Time, decide func(c courier.Courier, holder string) (*courier.Claim, error)) (courier.LiveRecord, error) {
	return s.ClaimCourierHolding(ctx, id, taskID, hour, func(c courier.Courier, h courier.Holding) (*courier.Claim, error) {
		return decide(c, h.Holder)
	})
}

// ClaimCourierHolding implements courier.Store. The transaction takes the courier's lock (PostgreSQL;
// on SQLite it holds the write lock from its BEGIN), then one statement reads what the rule needs and
// what the live state is made of: the courier's row with the holding of task taskID, the slot of hour
// and its claims (readLive). The answer is that read with the stored claim added in its place, so
// nothing is read after the commit.
func (s *Store) ClaimCourierHolding(ctx context.Context, id, taskID string, hour time.Time, decide func(c courier.Courier, h courier.Holding) (*courier.Claim, error)) (courier.LiveRecord, error) {
	var rec courier.LiveRecord
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if s.e.Lock != "" {
			if err := s.lock(ctx, tx, id); err != nil {
				return err
			}
		}
		cur, h, err := s.readLive(ctx, tx, id, hour, taskID)
		if err != nil {
			return err
		}
		c, err := decide(cur.Courier, h)
		if err != nil {
			return err
		}
		if c == nil {
			rec = cur
			return nil
		}
		if err := checkClaim(*c, id, taskID); err != nil {
			return err
		}
		if h.Holder == id {
			// Already held: the claim stays as it is, its generation raised.
			if c.Generation > h.Generation {
				_, err = tx.ExecContext(ctx, `UPDATE claims SET generation = $1 WHERE task_id = $2 AND courier_id = $3`, c.Generation, taskID, id)
				if err != nil {
					return s.e.MapError(err, fmt.Sprintf("raise the generation of the claim of task %s on courier %s", taskID, id))
				}
			}
			rec = cur
			return nil
		}
		_, err = tx.ExecContext(ctx, `
			INSERT INTO claims (task_id, courier_id, claimed_at, expected_release, generation) VALUES ($1, $2, $3, $4, $5)`,
			c.TaskID, c.CourierID, s.time(c.ClaimedAt), s.time(c.ExpectedRelease), c.Generation)
		if err != nil {
			return s.e.MapError(err, fmt.Sprintf("claim courier %s for task %s", id, taskID))
		}
		stored := *c
		stored.ClaimedAt, stored.ExpectedRelease = storedUTC(c.ClaimedAt), storedUTC(c.ExpectedRelease)
		stored.Generation = 0 // as readLive reads claims
		cur.Claims = insertClaim(cur.Claims, stored)
		cur.Courier.ActiveTasks = len(cur.Claims)
		rec = cur
		return nil
	})
	if err != nil {
		return courier.LiveRecord{}, err
	}
	return rec, nil
}

// storedUTC is t as a read gives it back: truncated to the microsecond, in UTC.
func storedUTC(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// insertClaim adds c to claims, which are ordered by ClaimedAt then TaskID (the claims index's order,
// byte order on both engines), in its place.
func insertClaim(claims []courier.Claim, c courier.Claim) []courier.Claim {
	i, _ := slices.BinarySearchFunc(claims, c, func(a, b courier.Claim) int {
		if n := a.ClaimedAt.Compare(b.ClaimedAt); n != 0 {
			return n
		}
		return strings.Compare(a.TaskID, b.TaskID)
	})
	return slices.Insert(claims, i, c)
}

// ReleaseCourier implements courier.Store. Deleting needs no lock: fewer claims never break a rule.
func (s *Store) ReleaseCourier(ctx context.Context, id, taskID string) (released bool, err error) {
	released, err = s.deleteClaim(ctx, s.db, id, taskID)
	if err != nil || released {
		return released, err
	}
	// Couriers are never deleted, so checking existence after the delete found nothing is not a race.
	return false, s.courierExists(ctx, s.db, id)
}

// ReleaseCourierLive implements courier.Store: the claim's DELETE, then readLive, which also answers
// NotFound for a courier that does not exist (couriers are never deleted, so reading after a delete that
// found nothing is not a race). Where transactions are grouped (SQLite) both run in one, which shares
// its COMMIT with the calls beside it; elsewhere (PostgreSQL) one after the other without a
// transaction: two round trips instead of four.
func (s *Store) ReleaseCourierLive(ctx context.Context, id, taskID string, hour time.Time) (released bool, rec courier.LiveRecord, err error) {
	return s.changeThenReadLive(ctx, id, hour, func(q querier) (bool, error) {
		return s.deleteClaim(ctx, q, id, taskID)
	})
}

// changeThenReadLive runs change, then reads courier id's live state (readLive): on SQLite in one
// (grouped) transaction, elsewhere one after the other without a transaction. It returns what change
// reported and the state read.
func (s *Store) changeThenReadLive(ctx context.Context, id string, hour time.Time, change func(q querier) (bool, error)) (changed bool, rec courier.LiveRecord, err error) {
	run := func(q querier) error {
		var err error
		if changed, err = change(q); err != nil {
			return err
		}
		rec, _, err = s.readLive(ctx, q, id, hour, "")
		return err
	}
	if s.group != nil {
		err = s.inTx(ctx, func(tx *sql.Tx) error { return run(tx) })
	} else {
		err = run(s.db)
	}
	if err != nil {
		return false, courier.LiveRecord{}, err
	}
	return changed, rec, nil
}

// ReleaseCourierGeneration implements courier.Store. The released record is written first, with the
// courier's lock taken (PostgreSQL: in the same statement, which commits once it holds the lock, so a
// claim of the courier still open then has committed, and one that takes the lock later reads the
// record), then the claim is deleted unless its generation is higher, then the live state is read
// (readLive). On SQLite, whose write lock orders every claim, all three run in one (grouped)
// transaction.
func (s *Store) ReleaseCourierGeneration(ctx context.Context, id, taskID string, hour time.Time, generation int64, now, keepUntil time.Time) (released bool, rec courier.LiveRecord, err error) {
	if generation < 1 {
		return false, courier.LiveRecord{}, apperr.Errorf(apperr.Invalid, "release generation %d is below 1", generation)
	}
	return s.changeThenReadLive(ctx, id, hour, func(q querier) (bool, error) {
		if err := s.recordRelease(ctx, q, id, taskID, generation, now, keepUntil); err != nil {
			return false, err
		}
		return s.deleteClaimUpTo(ctx, q, id, taskID, generation)
	})
}

// recordRelease keeps generation as released for task taskID on courier id until keepUntil (the higher
// generation and the later time of the stored and the new record), deletes the courier's records kept
// until before now, and takes the courier's lock (s.e.Lock; SQLite's transaction holds it already): one
// statement. NotFound when the courier does not exist.
func (s *Store) recordRelease(ctx context.Context, q querier, id, taskID string, generation int64, now, keepUntil time.Time) error {
	what := fmt.Sprintf("record the release of task %s from courier %s", taskID, id)
	if s.e.Lock == "" {
		if _, err := q.ExecContext(ctx, `DELETE FROM claim_releases WHERE courier_id = $1 AND keep_until < $2 AND task_id <> $3`, id, s.time(now), taskID); err != nil {
			return s.e.MapError(err, what)
		}
		if err := s.courierExists(ctx, q, id); err != nil {
			return err
		}
		if _, err := q.ExecContext(ctx, releaseUpsert, id, taskID, generation, s.time(keepUntil)); err != nil {
			return s.e.MapError(err, what)
		}
		return nil
	}
	var one int
	err := q.QueryRowContext(ctx, `
		WITH purged AS (
			DELETE FROM claim_releases WHERE courier_id = $1 AND keep_until < $5 AND task_id <> $2
		), kept AS (`+releaseUpsert+`
		)
		SELECT 1 FROM couriers WHERE id = $1`+s.e.Lock, id, taskID, generation, s.time(keepUntil), s.time(now)).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return courierNotFound(id)
	}
	if err != nil {
		return s.e.MapError(err, what)
	}
	return nil
}

// releaseUpsert keeps generation $3 as released for task $2 on courier $1 until $4.
const releaseUpsert = `
	INSERT INTO claim_releases (courier_id, task_id, generation, keep_until) VALUES ($1, $2, $3, $4)
	ON CONFLICT (courier_id, task_id) DO UPDATE SET
		generation = CASE WHEN excluded.generation > claim_releases.generation THEN excluded.generation ELSE claim_releases.generation END,
		keep_until = CASE WHEN excluded.keep_until > claim_releases.keep_until THEN excluded.keep_until ELSE claim_releases.keep_until END`

// deleteClaim deletes the claim of task taskID on courier id, whatever its generation, and reports whether
// there was one.
func (s *Store) deleteClaim(ctx context.Context, q querier, id, taskID string) (bool, error) {
	return s.deleteClaimUpTo(ctx, q, id, taskID, math.MaxInt64)
}

// deleteClaimUpTo deletes the claim of task taskID on courier id if its generation is at most generation,
// and reports whether there was one.
func (s *Store) deleteClaimUpTo(ctx context.Context, q querier, id, taskID string, generation int64) (bool, error) {
	res, err := q.ExecContext(ctx, `DELETE FROM claims WHERE courier_id = $1 AND task_id = $2 AND generation <= $3`, id, taskID, generation)
	if err != nil {
		return false, s.e.MapError(err, fmt.Sprintf("release task %s from courier %s", taskID, id))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, s.e.MapError(err, fmt.Sprintf("release task %s from courier %s", taskID, id))
	}
	return n > 0, nil
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

// LiveState implements courier.Store in one statement (readLive).
func (s *Store) LiveState(ctx context.Context, id string, hour time.Time) (c courier.Courier, claims []courier.Claim, availNow bool, err error) {
	rec, _, err := s.readLive(ctx, s.db, id, hour, "")
	if err != nil {
		return courier.Courier{}, nil, false, err
	}
	return rec.Courier, rec.Claims, rec.AvailableNow, nil
}

// liveQuery reads a courier's live state in one statement: the courier's row, joined with the slot of
// hour $2 (at most one row: slots are whole hours keyed by courier and hour) and with its claims in the
// order of their index, gives one row per claim (one without a claim when there is none) and no row when
// the courier does not exist. liveHolderQuery adds the courier holding task $3's claim, for a claim's
// rule.
const (
	liveColumns = `c.id, c.user_id, c.display_name, c.mode, c.capacity, c.status, c.created_at, c.updated_at, c.version,
		a.courier_id IS NOT NULL, k.task_id, k.claimed_at, k.expected_release`
	liveFrom = `
		FROM couriers c
		LEFT JOIN availability a ON a.courier_id = c.id AND a.hour = $2 AND a.available
		LEFT JOIN claims k ON k.courier_id = c.id
		WHERE c.id = $1
		ORDER BY k.claimed_at, k.task_id`
	liveQuery       = `SELECT ` + liveColumns + liveFrom
	liveHolderQuery = `SELECT ` + liveColumns + `, (SELECT courier_id FROM claims WHERE task_id = $3),
		(SELECT generation FROM claims WHERE task_id = $3),
		(SELECT generation FROM claim_releases WHERE courier_id = $1 AND task_id = $3)` + liveFrom
)

// readLive reads courier id's live state for hour in one statement (liveQuery) and, when taskID is not
// empty, the holding of task taskID (liveHolderQuery). ActiveTasks is the number of claims read.
// NotFound when the courier does not exist.
func (s *Store) readLive(ctx context.Context, q querier, id string, hour time.Time, taskID string) (rec courier.LiveRecord, h courier.Holding, err error) {
	found := false
	err = func() error {
		var (
			rows *sql.Rows
			err  error
		)
		if taskID == "" {
			rows, err = q.QueryContext(ctx, liveQuery, id, s.time(hourStart(hour)))
		} else {
			rows, err = q.QueryContext(ctx, liveHolderQuery, id, s.time(hourStart(hour)), taskID)
		}
		if err != nil {
			return err
		}
		defer rows.Close()
		var (
			c        = &rec.Courier
			task     sql.NullString
			claim    courier.Claim
			held     sql.NullString
			heldGen  sql.NullInt64
			released sql.NullInt64
			skip     sql.RawBytes
		)
		first := []any{&c.ID, &c.UserID, &c.DisplayName, &c.Mode, &c.Capacity, &c.Status,
			database.ScanTime(&c.CreatedAt), database.ScanTime(&c.UpdatedAt), &c.Version,
			&rec.AvailableNow, &task, database.ScanTime(&claim.ClaimedAt), database.ScanTime(&claim.ExpectedRelease)}
		if taskID != "" {
			first = append(first, &held, &heldGen, &released)
		}
		// The courier's columns (and the holder) repeat on every row: read once, then skipped without a
		// copy.
		rest := slices.Clone(first)
		for i := range rest {
			if i < 10 || i > 12 {
				rest[i] = &skip
			}
		}
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
				rec.Claims = append(rec.Claims, courier.Claim{CourierID: id, TaskID: task.String,
					ClaimedAt: claim.ClaimedAt, ExpectedRelease: claim.ExpectedRelease})
			}
		}
		h = courier.Holding{Holder: held.String, Generation: heldGen.Int64, Released: released.Int64}
		return rows.Err()
	}()
	if err != nil {
		return courier.LiveRecord{}, courier.Holding{}, s.e.MapError(err, "read live state of courier "+id)
	}
	if !found {
		return courier.LiveRecord{}, courier.Holding{}, courierNotFound(id)
	}
	rec.Courier.ActiveTasks = len(rec.Claims)
	return rec, h, nil
}
