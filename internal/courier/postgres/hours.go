package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"lastmile/internal/courier"
	"lastmile/internal/platform/database"
)

// courierExists reports NotFound unless courier id exists.
func courierExists(ctx context.Context, q querier, id string) error {
	var one int
	err := q.QueryRow(ctx, `SELECT 1 FROM couriers WHERE id = $1`, id).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return courierNotFound(id)
	}
	if err != nil {
		return mapError(err, "look up courier "+id)
	}
	return nil
}

// SetAvailability implements courier.Store. Hours are normalised to the start of their hour in UTC.
// The courier's row lock keeps a concurrent claim from covering an hour between the check and the
// write.
func (s *Store) SetAvailability(ctx context.Context, id string, hours []time.Time, available bool) error {
	// One row per hour: an upsert may not touch the same row twice.
	norm := make([]time.Time, 0, len(hours))
	for _, h := range hours {
		norm = append(norm, hourStart(h))
	}
	slices.SortFunc(norm, time.Time.Compare)
	norm = slices.CompactFunc(norm, time.Time.Equal)

	return database.InPgxTx(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := lockCourier(ctx, tx, id); err != nil {
			return err
		}
		if !available {
			claims, err := loadClaims(ctx, tx, id)
			if err != nil {
				return err
			}
			if err := courier.CheckUnclaimedHours(id, norm, claims); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, `
			INSERT INTO availability (courier_id, hour, available)
			SELECT $1, h, $3 FROM unnest($2::timestamptz[]) AS h
			ON CONFLICT (courier_id, hour) DO UPDATE SET available = excluded.available
			WHERE availability.available <> excluded.available`,
			id, norm, available)
		if err != nil {
			return mapError(err, "set availability of courier "+id)
		}
		return nil
	})
}

// AvailableHours implements courier.Store.
func (s *Store) AvailableHours(ctx context.Context, id string, from, to time.Time) ([]time.Time, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT hour FROM availability
		WHERE courier_id = $1 AND available AND hour >= $2 AND hour < $3
		ORDER BY hour`, id, ceilTS(from), ceilTS(to))
	if err != nil {
		return nil, mapError(err, "read availability of courier "+id)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (time.Time, error) {
		var h time.Time
		err := row.Scan(&h)
		return h.UTC(), err
	})
	if err != nil {
		return nil, mapError(err, "read availability of courier "+id)
	}
	// Couriers are never deleted, so checking existence only when no hour matched is not a race.
	if len(out) == 0 {
		if err := courierExists(ctx, s.pool, id); err != nil {
			return nil, err
		}
		return nil, nil
	}
	return out, nil
}

// AvailableAt implements courier.Store. hour is normalised to the start of its hour in UTC.
func (s *Store) AvailableAt(ctx context.Context, hour time.Time, ids []string) (map[string]bool, error) {
	out := make(map[string]bool)
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, `
		SELECT courier_id FROM availability
		WHERE hour = $1 AND available AND courier_id = ANY ($2::text[])`, hourStart(hour), ids)
	if err != nil {
		return nil, mapError(err, "read availability at "+hourStart(hour).Format(time.RFC3339))
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("read availability at %s: %w", hourStart(hour).Format(time.RFC3339), err)
		}
		out[id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, mapError(err, "read availability at "+hourStart(hour).Format(time.RFC3339))
	}
	return out, nil
}
