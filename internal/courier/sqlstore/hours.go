package sqlstore

import (
	"context"
	"database/sql"
	"slices"
	"time"

	"lastmile/internal/courier"
	"lastmile/internal/platform/database"
)

// inChunk bounds the ids bound into one IN (...) list, well below SQLite's limit on host parameters.
const inChunk = 500

// SetAvailability implements courier.Store. Hours are normalised to the start of their hour in UTC.
func (s *Store) SetAvailability(ctx context.Context, id string, hours []time.Time, available bool, check func(claims []courier.Claim) error) error {
	// One row per hour: an upsert may not touch the same row twice.
	norm := make([]time.Time, 0, len(hours))
	for _, h := range hours {
		norm = append(norm, hourStart(h))
	}
	slices.SortFunc(norm, time.Time.Compare)
	norm = slices.CompactFunc(norm, time.Time.Equal)

	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := s.lock(ctx, tx, id); err != nil {
			return err
		}
		claims, err := s.loadClaims(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := check(claims); err != nil {
			return err
		}
		stmt, err := tx.PrepareContext(ctx, `
			INSERT INTO availability (courier_id, hour, available) VALUES ($1, $2, $3)
			ON CONFLICT (courier_id, hour) DO UPDATE SET available = excluded.available
			WHERE availability.available <> excluded.available`)
		if err != nil {
			return s.e.MapError(err, "set availability of courier "+id)
		}
		defer stmt.Close()
		for _, h := range norm {
			if _, err := stmt.ExecContext(ctx, id, s.time(h), available); err != nil {
				return s.e.MapError(err, "set availability of courier "+id)
			}
		}
		return nil
	})
}

// AvailableHours implements courier.Store. One statement answers both questions: the courier's row
// joined with its matching hours gives no row when the courier does not exist, one row without an hour
// when it has none in the range, and a row per hour otherwise.
func (s *Store) AvailableHours(ctx context.Context, id string, from, to time.Time) ([]time.Time, error) {
	found := false
	out, err := func() ([]time.Time, error) {
		rows, err := s.db.QueryContext(ctx, `
			SELECT a.hour FROM couriers c
			LEFT JOIN availability a ON a.courier_id = c.id AND a.available AND a.hour >= $2 AND a.hour < $3
			WHERE c.id = $1
			ORDER BY a.hour`, id, s.ceilTime(from), s.ceilTime(to))
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var out []time.Time
		for rows.Next() {
			var h time.Time
			if err := rows.Scan(database.ScanTime(&h)); err != nil {
				return nil, err
			}
			found = true
			if !h.IsZero() { // NULL: the courier, without an hour in the range
				out = append(out, h)
			}
		}
		return out, rows.Err()
	}()
	if err != nil {
		return nil, s.e.MapError(err, "read availability of courier "+id)
	}
	if !found {
		return nil, courierNotFound(id)
	}
	return out, nil
}

// AvailableAt implements courier.Store. hour is normalised to the start of its hour in UTC.
func (s *Store) AvailableAt(ctx context.Context, hour time.Time, ids []string) (map[string]bool, error) {
	out := make(map[string]bool)
	h := hourStart(hour)
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), inChunk)]
		ids = ids[len(chunk):]
		args := make([]any, 0, len(chunk)+1)
		args = append(args, s.time(h))
		for _, id := range chunk {
			args = append(args, id)
		}
		if err := func() error {
			rows, err := s.db.QueryContext(ctx, `
				SELECT courier_id FROM availability
				WHERE hour = $1 AND available AND courier_id IN (`+placeholders(2, len(chunk))+`)`, args...)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var id string
				if err := rows.Scan(&id); err != nil {
					return err
				}
				out[id] = true
			}
			return rows.Err()
		}(); err != nil {
			return nil, s.e.MapError(err, "read availability at "+h.Format(time.RFC3339))
		}
	}
	return out, nil
}
