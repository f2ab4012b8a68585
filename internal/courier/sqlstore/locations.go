package sqlstore

import (
	"context"
	"database/sql"

	"lastmile/internal/courier"
	"lastmile/internal/platform/database"
)

// SaveLocations implements courier.Store. The whole batch is one transaction; the upsert's WHERE keeps
// a stored fix that is as new as or newer than the incoming one, and the EXISTS skips unknown couriers
// instead of failing the batch on the foreign key.
func (s *Store) SaveLocations(ctx context.Context, fixes []courier.LocationFix) error {
	if len(fixes) == 0 {
		return nil
	}
	if err := checkFixes(fixes); err != nil {
		return err
	}
	batch := newestFixes(fixes)
	return s.inTx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `
			INSERT INTO locations (courier_id, lat, lng, recorded_at, accuracy_meters, speed_mps, heading)
			SELECT $1, $2, $3, $4, $5, $6, $7 WHERE EXISTS (SELECT 1 FROM couriers WHERE id = $1)
			ON CONFLICT (courier_id) DO UPDATE SET
				lat = excluded.lat, lng = excluded.lng, recorded_at = excluded.recorded_at,
				accuracy_meters = excluded.accuracy_meters, speed_mps = excluded.speed_mps, heading = excluded.heading
			WHERE excluded.recorded_at > locations.recorded_at`)
		if err != nil {
			return s.e.MapError(err, "save locations")
		}
		defer stmt.Close()
		for _, f := range batch {
			_, err := stmt.ExecContext(ctx, f.CourierID, f.Lat, f.Lng, s.time(f.RecordedAt), f.AccuracyMeters, f.SpeedMPS, f.Heading)
			if err != nil {
				return s.e.MapError(err, "save location of courier "+f.CourierID)
			}
		}
		return nil
	})
}

// LoadLocations implements courier.Store.
func (s *Store) LoadLocations(ctx context.Context) ([]courier.LocationFix, error) {
	rows, err := s.db.QueryContext(ctx, `
		SELECT courier_id, lat, lng, recorded_at, accuracy_meters, speed_mps, heading
		FROM locations ORDER BY courier_id`)
	if err != nil {
		return nil, s.e.MapError(err, "load locations")
	}
	defer rows.Close()
	var out []courier.LocationFix
	for rows.Next() {
		var f courier.LocationFix
		if err := rows.Scan(&f.CourierID, &f.Lat, &f.Lng, database.ScanTime(&f.RecordedAt), &f.AccuracyMeters, &f.SpeedMPS, &f.Heading); err != nil {
			return nil, s.e.MapError(err, "load locations")
		}
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, s.e.MapError(err, "load locations")
	}
	return out, nil
}
