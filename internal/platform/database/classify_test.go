package database_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/database"
	"lastmile/internal/platform/database/databasetest"
)

func TestClassify(t *testing.T) {
	conflict := apperr.Errorf(apperr.Conflict, "taken")
	tests := []struct {
		name string
		err  error
		want apperr.Code
	}{
		{"nil", nil, ""},
		{"bad connection", fmt.Errorf("get user: %w", driver.ErrBadConn), apperr.Unavailable},
		{"connection done", sql.ErrConnDone, apperr.Unavailable},
		{"refused", fmt.Errorf("dial: %w", syscall.ECONNREFUSED), apperr.Unavailable},
		{"reset", syscall.ECONNRESET, apperr.Unavailable},
		{"server went away mid-answer", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), apperr.Unavailable},
		{"admin shutdown", &pgconn.PgError{Code: "57P01"}, apperr.Unavailable},
		{"starting up", &pgconn.PgError{Code: "57P03"}, apperr.Unavailable},
		{"too many connections", &pgconn.PgError{Code: "53300"}, apperr.Unavailable},
		{"connection exception", &pgconn.PgError{Code: "08006"}, apperr.Unavailable},
		{"postgres disk full", fmt.Errorf("commit: %w", &pgconn.PgError{Code: "53100"}), apperr.Unavailable},
		{"file system full", fmt.Errorf("write proof: %w", syscall.ENOSPC), apperr.Unavailable},
		{"unique violation", &pgconn.PgError{Code: "23505"}, apperr.Internal},
		{"syntax error", &pgconn.PgError{Code: "42601"}, apperr.Internal},
		{"caller's deadline", context.DeadlineExceeded, apperr.Internal},
		{"caller's cancellation", context.Canceled, apperr.Internal},
		{"already classified", fmt.Errorf("create: %w", conflict), apperr.Conflict},
		{"anything else", errors.New("boom"), apperr.Internal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := database.Classify(tt.err)
			if code := apperr.CodeOf(got); code != tt.want {
				t.Errorf("Classify(%v) = %v (code %q), want code %q", tt.err, got, code, tt.want)
			}
			if tt.err != nil && !errors.Is(got, tt.err) {
				t.Errorf("Classify(%v) = %v, which no longer wraps the error", tt.err, got)
			}
			if got, want := database.IsUnavailable(tt.err) || database.IsStorageFull(tt.err), tt.want == apperr.Unavailable; got != want {
				t.Errorf("IsUnavailable(%v) = %v, want %v", tt.err, got, want)
			}
		})
	}
}

// unreachablePool returns a pool for a PostgreSQL server that does not listen: nothing connects until
// the first query, which fails as with a stopped server.
func unreachablePool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig("postgres://postgres@127.0.0.1:1/lastmile?sslmode=disable&connect_timeout=5")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// TestUnreachablePostgresIsUnavailable: with the server unreachable, a query and a transaction fail
// with Unavailable, through the pgx pool and through database/sql over it.
// TestFullSQLiteIsUnavailable: a write that SQLite refuses for want of space (here its page limit, as a
// full disk does) answers UNAVAILABLE "storage is full", not Internal.
func TestFullSQLiteIsUnavailable(t *testing.T) {
	ctx := testContext(t)
	db := databasetest.SQLite(t)
	if _, err := db.ExecContext(ctx, "CREATE TABLE big (b BLOB)"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.QueryRowContext(ctx, "PRAGMA page_count").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, fmt.Sprintf("PRAGMA max_page_count = %d", n+2)); err != nil {
		t.Fatal(err)
	}
	_, err := db.ExecContext(ctx, "INSERT INTO big VALUES (zeroblob(1000000))")
	if err == nil {
		t.Fatal("insert past max_page_count succeeded")
	}
	got := database.Classify(err)
	if code := apperr.CodeOf(got); code != apperr.Unavailable {
		t.Errorf("Classify(%v) code = %q, want %q", err, code, apperr.Unavailable)
	}
	if msg := apperr.As(got).Message; msg != "the server's storage is full; try again later" {
		t.Errorf("message = %q", msg)
	}
}

func TestUnreachablePostgresIsUnavailable(t *testing.T) {
	ctx := testContext(t)
	pool := unreachablePool(t)
	_, err := pool.Exec(ctx, "SELECT 1")
	if got := apperr.CodeOf(database.Classify(err)); got != apperr.Unavailable {
		t.Errorf("Classify(pool.Exec() error %v) code = %q, want %q", err, got, apperr.Unavailable)
	}
	err = database.InPgxTx(ctx, pool, nil)
	if got := apperr.CodeOf(err); got != apperr.Unavailable {
		t.Errorf("InPgxTx() = %v (code %q), want %q", err, got, apperr.Unavailable)
	}

	db := database.SQLDB(pool)
	defer db.Close()
	err = db.QueryRowContext(ctx, "SELECT 1").Scan(new(int))
	if got := apperr.CodeOf(database.Classify(err)); got != apperr.Unavailable {
		t.Errorf("Classify(QueryRow() error %v) code = %q, want %q", err, got, apperr.Unavailable)
	}
	err = database.InTx(ctx, db, func(*sql.Tx) error { return nil })
	if got := apperr.CodeOf(err); got != apperr.Unavailable {
		t.Errorf("InTx() = %v (code %q), want %q", err, got, apperr.Unavailable)
	}
}

// TestTerminatedConnectionIsUnavailable: a server that ends the connection under a transaction (as a
// shutdown does) makes the transaction fail with Unavailable.
func TestTerminatedConnectionIsUnavailable(t *testing.T) {
	ctx := testContext(t)
	pool := databasetest.Postgres(t, "")
	db := database.SQLDB(pool)
	defer db.Close()
	err := database.InTx(ctx, db, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "SELECT pg_terminate_backend(pg_backend_pid())"); err != nil {
			return database.Classify(fmt.Errorf("terminate own backend: %w", err))
		}
		return nil
	})
	if got := apperr.CodeOf(err); got != apperr.Unavailable {
		t.Errorf("InTx(terminated connection) = %v (code %q), want %q", err, got, apperr.Unavailable)
	}
}
