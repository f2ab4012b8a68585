package database

import (
	"database/sql"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

// A store shared by both engines runs the same SQL text on a *sql.DB: PostgreSQL through pgx's
// database/sql adapter (SQLDB), SQLite through OpenSQLite. Both drivers accept $1, $2, ... placeholders,
// so the text needs no rewriting; what differs is how a time is stored (Unix microseconds in SQLite,
// timestamptz in PostgreSQL), which Time and ScanTime hide, and how driver errors read, which stays with
// each engine's package.

// SQLDB returns a *sql.DB that runs on pool's connections (search_path and limits as OpenPostgres set
// them). Closing it does not close pool.
func SQLDB(pool *pgxpool.Pool) *sql.DB {
	return stdlib.OpenDBFromPool(pool)
}

// Time returns t as d stores it, truncated to the microsecond: Unix microseconds (int64) for SQLite, a
// UTC time.Time for PostgreSQL's timestamptz. A zero t is stored as is in PostgreSQL and as
// time.Time{}.UnixMicro() in SQLite; callers store "no time" as NULL instead (see NullTime).
func (d Dialect) Time(t time.Time) any {
	if d == SQLite {
		return t.UnixMicro()
	}
	return t.UTC().Truncate(time.Microsecond)
}

// NullTime is Time, except that the zero time is stored as NULL.
func (d Dialect) NullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return d.Time(t)
}

// ScanTime returns a sql.Scanner that reads a time column stored by Time or NullTime into *dst, in UTC;
// NULL reads as the zero time.
func ScanTime(dst *time.Time) sql.Scanner { return timeScanner{dst} }

type timeScanner struct{ dst *time.Time }

func (s timeScanner) Scan(v any) error {
	switch v := v.(type) {
	case nil:
		*s.dst = time.Time{}
	case int64:
		*s.dst = time.UnixMicro(v).UTC()
	case time.Time:
		*s.dst = v.UTC()
	default:
		return fmt.Errorf("scan time: unsupported column type %T", v)
	}
	return nil
}
