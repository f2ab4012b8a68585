package sqlstore

import (
	"context"
	"database/sql"
	"math/bits"
	"slices"
	"strconv"

	"lastmile/internal/courier"
	"lastmile/internal/platform/database"
)

// A flush writes its batch with as few statements as the engines allow well: multi-row upserts of up
// to maxLocationRows rows (one round trip each) on PostgreSQL, where the Service's default flush
// (courier.DefaultFlushBatch couriers) is therefore one statement, and of up to sqliteLocationRows rows
// on SQLite. Both stay far under the engines' limits on parameters (32,766 in SQLite, 65,535 in
// PostgreSQL): 4,096 rows bind 28,672.
//
// SQLite's bound is lower because its driver (modernc.org/sqlite) matches every parameter against the
// argument list, so binding costs the square of the parameter count: about 11 µs a row up to 256 rows,
// 60 µs at 1,024, 130 µs at 4,096 with anonymous ? placeholders, and 10 to 35 times that with $n ones
// (it formats each candidate's ordinal to compare it). The upsert is therefore written with ? on SQLite,
// whose rows bind in order, and with $n on PostgreSQL, whose driver needs them; with no round trip to
// save, SQLite gains nothing from larger statements.
//
// A statement's row count is rounded up to a power of two and the extra rows are NULL: pgx prepares and
// caches (on the server, per connection) every distinct statement text it runs, and flushes of every
// size from 1 to maxLocationRows would fill that cache with thousands of large statements, each
// prepared at the cost of an extra round trip. Powers of two leave 13 texts. A NULL courier_id matches
// no courier, so the EXISTS that skips unknown couriers drops the padding too.
const (
	locationColumns    = 7
	maxLocationRows    = 4096
	sqliteLocationRows = 256
)

// SaveLocations implements courier.Store. The upsert's WHERE keeps a stored fix that is as new as or
// newer than the incoming one, and the EXISTS skips unknown couriers instead of failing the batch on the
// foreign key. A batch of more couriers than one statement writes (see above) takes several statements
// in one transaction; a smaller one is a single statement, atomic on its own, so it needs no BEGIN and
// no COMMIT.
func (s *Store) SaveLocations(ctx context.Context, fixes []courier.LocationFix) error {
	if len(fixes) == 0 {
		return nil
	}
	if err := checkFixes(fixes); err != nil {
		return err
	}
	batch := newestFixes(fixes)
	chunk := maxLocationRows
	if s.e.Dialect == database.SQLite {
		chunk = sqliteLocationRows
	}
	if len(batch) <= chunk {
		return s.upsertLocations(ctx, s.db, batch)
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		for rows := range slices.Chunk(batch, chunk) {
			if err := s.upsertLocations(ctx, tx, rows); err != nil {
				return err
			}
		}
		return nil
	})
}

// upsertLocations writes fixes, of distinct couriers and no more than one statement takes, in one
// statement.
func (s *Store) upsertLocations(ctx context.Context, q querier, fixes []courier.LocationFix) error {
	rows := 1 << bits.Len(uint(len(fixes)-1)) // len(fixes) rounded up to a power of two
	args := make([]any, 0, rows*locationColumns)
	for _, f := range fixes {
		args = append(args, f.CourierID, f.Lat, f.Lng, s.time(f.RecordedAt), f.AccuracyMeters, f.SpeedMPS, f.Heading)
	}
	args = append(args, make([]any, (rows-len(fixes))*locationColumns)...) // NULL rows, see above
	if _, err := q.ExecContext(ctx, s.upsertLocationsSQL(rows), args...); err != nil {
		return s.e.MapError(err, "save "+strconv.Itoa(len(fixes))+" locations")
	}
	return nil
}

// upsertLocationsSQL returns the upsert of a VALUES list of rows rows. PostgreSQL types a VALUES column
// by its rows and would type a column of bare parameters as text, which it then refuses to insert into
// a double precision column; the first row's casts type every column, and the parameters of the rows
// after it take those types. SQLite reads the casts as no-ops, and gets ? placeholders (see above).
func (s *Store) upsertLocationsSQL(rows int) string {
	const head = `
		WITH f (courier_id, lat, lng, recorded_at, accuracy_meters, speed_mps, heading) AS (VALUES
			`
	const tail = `)
		INSERT INTO locations (courier_id, lat, lng, recorded_at, accuracy_meters, speed_mps, heading)
		SELECT courier_id, lat, lng, recorded_at, accuracy_meters, speed_mps, heading FROM f
		WHERE EXISTS (SELECT 1 FROM couriers c WHERE c.id = f.courier_id)
		ON CONFLICT (courier_id) DO UPDATE SET
			lat = excluded.lat, lng = excluded.lng, recorded_at = excluded.recorded_at,
			accuracy_meters = excluded.accuracy_meters, speed_mps = excluded.speed_mps, heading = excluded.heading
		WHERE excluded.recorded_at > locations.recorded_at`
	const double = "DOUBLE PRECISION"
	firstRow := [locationColumns]string{"TEXT", double, double, s.timeType(), double, double, double}
	anonymous := s.e.Dialect == database.SQLite
	b := make([]byte, 0, len(head)+len(tail)+rows*locationColumns*8+200)
	b = append(b, head...)
	for r := range rows {
		if r > 0 {
			b = append(b, ",\n\t\t\t"...)
		}
		b = append(b, '(')
		for c := range locationColumns {
			if c > 0 {
				b = append(b, ", "...)
			}
			if r == 0 {
				b = append(b, "CAST("...)
			}
			if anonymous {
				b = append(b, '?')
			} else {
				b = append(b, '$')
				b = strconv.AppendInt(b, int64(r*locationColumns+c+1), 10)
			}
			if r == 0 {
				b = append(b, " AS "+firstRow[c]+")"...)
			}
		}
		b = append(b, ')')
	}
	b = append(b, tail...)
	return string(b)
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
