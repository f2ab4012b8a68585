package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"lastmile/internal/courier"
	"lastmile/internal/platform/database"
)

// inChunk bounds the ids bound into one IN (...) list, well below SQLite's limit on host parameters.
const inChunk = 500

// courierExists reports NotFound unless courier id exists.
func courierExists(ctx context.Context, q querier, id string) error {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM couriers WHERE id = ?`, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return courierNotFound(id)
	}
	if err != nil {
		return fmt.Errorf("look up courier %s: %w", id, err)
	}
	return nil
}

// SetAvailability implements courier.Store. Hours are normalised to the start of their hour in UTC.
func (s *Store) SetAvailability(ctx context.Context, id string, hours []time.Time, available bool) error {
	return database.InTx(ctx, s.db, func(tx *sql.Tx) error {
		if err := courierExists(ctx, tx, id); err != nil {
			return err
		}
		if !available {
			claims, err := loadClaims(ctx, tx, id)
			if err != nil {
				return err
			}
			if err := courier.CheckUnclaimedHours(id, hours, claims); err != nil {
				return err
			}
		}
		stmt, err := tx.PrepareContext(ctx, `
			INSERT INTO availability (courier_id, hour, available) VALUES (?, ?, ?)
			ON CONFLICT (courier_id, hour) DO UPDATE SET available = excluded.available
			WHERE availability.available <> excluded.available`)
		if err != nil {
			return fmt.Errorf("set availability of courier %s: %w", id, err)
		}
		defer stmt.Close()
		for _, h := range hours {
			if _, err := stmt.ExecContext(ctx, id, micros(hourStart(h)), available); err != nil {
				return mapError(err, "set availability of courier "+id)
			}
		}
		return nil
	})
}

// AvailableHours implements courier.Store.
func (s *Store) AvailableHours(ctx context.Context, id string, from, to time.Time) ([]time.Time, error) {
	out, err := func() ([]time.Time, error) {
		rows, err := s.db.QueryContext(ctx, `
			SELECT hour FROM availability
			WHERE courier_id = ? AND available = 1 AND hour >= ? AND hour < ?
			ORDER BY hour`, id, ceilMicros(from), ceilMicros(to))
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var out []time.Time
		for rows.Next() {
			var us int64
			if err := rows.Scan(&us); err != nil {
				return nil, err
			}
			out = append(out, fromMicros(us))
		}
		return out, rows.Err()
	}()
	if err != nil {
		return nil, fmt.Errorf("read availability of courier %s: %w", id, err)
	}
	// Couriers are never deleted, so checking existence only when no hour matched is not a race.
	if len(out) == 0 {
		if err := courierExists(ctx, s.db, id); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// AvailableAt implements courier.Store. hour is normalised to the start of its hour in UTC.
func (s *Store) AvailableAt(ctx context.Context, hour time.Time, ids []string) (map[string]bool, error) {
	out := make(map[string]bool)
	h := micros(hourStart(hour))
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), inChunk)]
		ids = ids[len(chunk):]
		args := make([]any, 0, len(chunk)+1)
		args = append(args, h)
		for _, id := range chunk {
			args = append(args, id)
		}
		marks := strings.Repeat(",?", len(chunk))[1:]
		if err := func() error {
			rows, err := s.db.QueryContext(ctx, `
				SELECT courier_id FROM availability
				WHERE hour = ? AND available = 1 AND courier_id IN (`+marks+`)`, args...)
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
			return nil, fmt.Errorf("read availability at %s: %w", hourStart(hour).Format(time.RFC3339), err)
		}
	}
	return out, nil
}
