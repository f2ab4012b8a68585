package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"lastmile/internal/courier"
)

// SaveLocations implements courier.Store with one statement over arrays, which is atomic on its own.
// The upsert's WHERE keeps a stored fix that is as new as or newer than the incoming one, and the
// EXISTS skips unknown couriers instead of failing the batch on the foreign key.
func (s *Store) SaveLocations(ctx context.Context, fixes []courier.LocationFix) error {
	if len(fixes) == 0 {
		return nil
	}
	if err := courier.CheckStorableFixes(fixes); err != nil {
		return err
	}
	batch := courier.NewestFixes(fixes)
	n := len(batch)
	ids := make([]string, 0, n)
	lat, lng, acc, speed, heading := make([]float64, 0, n), make([]float64, 0, n), make([]float64, 0, n), make([]float64, 0, n), make([]float64, 0, n)
	recorded := make([]time.Time, 0, n)
	for _, f := range batch {
		ids = append(ids, f.CourierID)
		lat, lng = append(lat, f.Lat), append(lng, f.Lng)
		recorded = append(recorded, ts(f.RecordedAt))
		acc, speed, heading = append(acc, f.AccuracyMeters), append(speed, f.SpeedMPS), append(heading, f.Heading)
	}
	_, err := s.pool.Exec(ctx, `
		INSERT INTO locations (courier_id, lat, lng, recorded_at, accuracy_meters, speed_mps, heading)
		SELECT f.courier_id, f.lat, f.lng, f.recorded_at, f.accuracy_meters, f.speed_mps, f.heading
		FROM unnest($1::text[], $2::float8[], $3::float8[], $4::timestamptz[], $5::float8[], $6::float8[], $7::float8[])
			AS f (courier_id, lat, lng, recorded_at, accuracy_meters, speed_mps, heading)
		WHERE EXISTS (SELECT 1 FROM couriers c WHERE c.id = f.courier_id)
		ON CONFLICT (courier_id) DO UPDATE SET
			lat = excluded.lat, lng = excluded.lng, recorded_at = excluded.recorded_at,
			accuracy_meters = excluded.accuracy_meters, speed_mps = excluded.speed_mps, heading = excluded.heading
		WHERE excluded.recorded_at > locations.recorded_at`,
		ids, lat, lng, recorded, acc, speed, heading)
	if err != nil {
		return mapError(err, "save locations")
	}
	return nil
}

// LoadLocations implements courier.Store.
func (s *Store) LoadLocations(ctx context.Context) ([]courier.LocationFix, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT courier_id, lat, lng, recorded_at, accuracy_meters, speed_mps, heading
		FROM locations ORDER BY courier_id`)
	if err != nil {
		return nil, mapError(err, "load locations")
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (courier.LocationFix, error) {
		var f courier.LocationFix
		err := row.Scan(&f.CourierID, &f.Lat, &f.Lng, &f.RecordedAt, &f.AccuracyMeters, &f.SpeedMPS, &f.Heading)
		f.RecordedAt = f.RecordedAt.UTC()
		return f, err
	})
	if err != nil {
		return nil, mapError(err, "load locations")
	}
	return out, nil
}
