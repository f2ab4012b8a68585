package database_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/database"
	"lastmile/internal/platform/database/databasetest"
)

// TestTimeRoundTrip stores times through Dialect.Time and NullTime with shared SQL text ($n
// placeholders) and reads them back with ScanTime, on both engines.
func TestTimeRoundTrip(t *testing.T) {
	engines := []struct {
		name    string
		dialect database.Dialect
		open    func(t *testing.T) *sql.DB
		column  string
	}{
		{"sqlite", database.SQLite, func(t *testing.T) *sql.DB { return databasetest.SQLite(t) }, "INTEGER"},
		{"postgres", database.Postgres, func(t *testing.T) *sql.DB {
			db := database.SQLDB(databasetest.Postgres(t, "codec"))
			t.Cleanup(func() { db.Close() })
			return db
		}, "timestamptz"},
	}
	at := time.Date(2026, 11, 30, 15, 4, 5, 123456789, time.FixedZone("x", 3600))
	want := at.UTC().Truncate(time.Microsecond)
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			db := e.open(t)
			ctx := context.Background()
			if _, err := db.ExecContext(ctx, `CREATE TABLE times (id INTEGER PRIMARY KEY, at `+e.column+`, maybe `+e.column+`)`); err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, `INSERT INTO times (id, at, maybe) VALUES ($1, $2, $3)`,
				1, e.dialect.Time(at), e.dialect.NullTime(time.Time{})); err != nil {
				t.Fatal(err)
			}
			var got, maybe time.Time
			maybe = at // must be reset to zero by a NULL
			if err := db.QueryRowContext(ctx, `SELECT at, maybe FROM times WHERE id = $1 AND at >= $2`, 1, e.dialect.Time(want)).
				Scan(database.ScanTime(&got), database.ScanTime(&maybe)); err != nil {
				t.Fatal(err)
			}
			if !got.Equal(want) || got.Location() != time.UTC {
				t.Errorf("at = %v, want %v in UTC", got, want)
			}
			if !maybe.IsZero() {
				t.Errorf("maybe = %v, want the zero time for NULL", maybe)
			}
		})
	}
}

func TestRowLimit(t *testing.T) {
	const most = 101
	for _, tt := range []struct{ limit, want int }{{1, 1}, {50, 50}, {most, most}, {most + 1, most}} {
		got, err := database.RowLimit(tt.limit, most)
		if err != nil || got != tt.want {
			t.Errorf("RowLimit(%d, %d) = %d, %v, want %d, nil", tt.limit, most, got, err, tt.want)
		}
	}
	for _, limit := range []int{0, -1} {
		_, err := database.RowLimit(limit, most)
		e := apperr.As(err)
		if e == nil || e.Code != apperr.Invalid || len(e.Violations) != 1 || e.Violations[0].Field != "limit" {
			t.Errorf("RowLimit(%d, %d) = %v, want Invalid naming the field limit", limit, most, err)
		}
	}
}
