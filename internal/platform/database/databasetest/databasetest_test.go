package databasetest_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"lastmile/internal/platform/database/databasetest"
)

// fakeTB records how a helper ended the test instead of ending it.
type fakeTB struct {
	testing.TB
	skipped, fatal string
}

func (f *fakeTB) Skipf(format string, args ...any) {
	f.skipped = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// callPostgresURL calls PostgresURL with a fakeTB on its own goroutine, as the testing package would,
// so that Skipf and Fatalf can end it.
func callPostgresURL(t *testing.T) *fakeTB {
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		databasetest.PostgresURL(f)
	}()
	<-done
	return f
}

func TestPostgresURLWithoutDSN(t *testing.T) {
	t.Setenv(databasetest.EnvPostgresDSN, "")

	t.Run("skips", func(t *testing.T) {
		t.Setenv(databasetest.EnvRequirePostgres, "")
		f := callPostgresURL(t)
		if f.fatal != "" || !strings.Contains(f.skipped, databasetest.EnvPostgresDSN) {
			t.Errorf("PostgresURL without DSN: skipped %q, fatal %q; want a skip naming %s", f.skipped, f.fatal, databasetest.EnvPostgresDSN)
		}
	})
	t.Run("fails when required", func(t *testing.T) {
		t.Setenv(databasetest.EnvRequirePostgres, "1")
		f := callPostgresURL(t)
		if f.skipped != "" || !strings.Contains(f.fatal, databasetest.EnvPostgresDSN) {
			t.Errorf("PostgresURL without DSN, required: skipped %q, fatal %q; want a failure naming %s", f.skipped, f.fatal, databasetest.EnvPostgresDSN)
		}
	})
}

func TestPostgresURLRejectsKeywordDSN(t *testing.T) {
	t.Setenv(databasetest.EnvPostgresDSN, "host=db password=s3cret")
	f := callPostgresURL(t)
	if f.fatal == "" || strings.Contains(f.fatal, "s3cret") {
		t.Errorf("PostgresURL with a keyword DSN: fatal %q, want a failure without the password", f.fatal)
	}
}

func TestSQLite(t *testing.T) {
	db := databasetest.SQLite(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v, want wal, nil", mode, err)
	}
}

func TestPostgresCreatesAndDropsDatabase(t *testing.T) {
	admin := os.Getenv(databasetest.EnvPostgresDSN)
	var name string
	t.Run("use", func(t *testing.T) {
		pool := databasetest.Postgres(t, "dispatch")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := pool.QueryRow(ctx, "SELECT current_database()").Scan(&name); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(name, "lastmile_test_") {
			t.Errorf("current_database() = %q, want lastmile_test_<hex>", name)
		}
	})
	if name == "" {
		return // skipped without a DSN
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Errorf("database %s still exists after the test ended", name)
	}
	u, _ := url.Parse(admin)
	if u.Path == "/"+name {
		t.Errorf("PostgresURL reused the admin database %s", name)
	}
}

func TestMigratedSQLiteMigratesOnceAndCopies(t *testing.T) {
	var runs atomic.Int32
	migrate := func(ctx context.Context, db *sql.DB) error {
		runs.Add(1)
		// More than the WAL's automatic checkpoint holds back, so that the template must fold it in.
		if _, err := db.ExecContext(ctx, "CREATE TABLE t (n INTEGER PRIMARY KEY, pad TEXT)"); err != nil {
			return err
		}
		for i := range 300 {
			if _, err := db.ExecContext(ctx, "INSERT INTO t VALUES (?, ?)", i, strings.Repeat("x", 1000)); err != nil {
				return err
			}
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key := newKey(t) // a key of its own: no other test's template
	a := databasetest.MigratedSQLite(t, key, migrate)
	b := databasetest.MigratedSQLite(t, key, migrate)
	if got := runs.Load(); got != 1 {
		t.Errorf("migrate ran %d times for two databases, want once", got)
	}
	if _, err := a.ExecContext(ctx, "DELETE FROM t WHERE n < 100"); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		db   *sql.DB
		want int
	}{"a": {a, 200}, "b": {b, 300}} {
		var n int
		if err := c.db.QueryRowContext(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil || n != c.want {
			t.Errorf("rows in %s = %d, %v; want %d, nil", name, n, err, c.want)
		}
		var mode string
		if err := c.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
			t.Errorf("%s: journal_mode = %q, %v, want wal, nil", name, mode, err)
		}
	}
}

func TestMigratedSQLiteFailsWithTheMigrationsError(t *testing.T) {
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		databasetest.MigratedSQLite(f, newKey(t), func(context.Context, *sql.DB) error { return errors.New("version 7 broke") })
	}()
	<-done
	if !strings.Contains(f.fatal, "version 7 broke") {
		t.Errorf("MigratedSQLite with a failing migration: fatal %q, want the migration's error", f.fatal)
	}
}

func TestMigratedPostgresMigratesOnceAndCopies(t *testing.T) {
	var runs atomic.Int32
	migrate := func(ctx context.Context, pool *pgxpool.Pool) error {
		runs.Add(1)
		if _, err := pool.Exec(ctx, "CREATE SCHEMA svc; CREATE TABLE t (n int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 300)"); err != nil {
			return err
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key := newKey(t) // a key of its own: no other test's template
	a := databasetest.MigratedPostgres(t, "svc", key, migrate)
	b := databasetest.MigratedPostgres(t, "svc", key, migrate)
	if got := runs.Load(); got != 1 {
		t.Errorf("migrate ran %d times for two databases, want once", got)
	}
	if _, err := a.Exec(ctx, "DELETE FROM t WHERE n <= 100"); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for name, c := range map[string]struct {
		pool *pgxpool.Pool
		want int
	}{"a": {a, 200}, "b": {b, 300}} {
		var n int
		var db, table string
		err := c.pool.QueryRow(ctx, "SELECT count(*), current_database(), (SELECT schemaname FROM pg_tables WHERE tablename = 't') FROM t").Scan(&n, &db, &table)
		if err != nil || n != c.want || table != "svc" || !strings.HasPrefix(db, "lastmile_test_") {
			t.Errorf("%s: rows, database, schema of t = %d, %q, %q, %v; want %d, lastmile_test_<hex>, svc, nil", name, n, db, table, err, c.want)
		}
		names[db] = true
	}
	if len(names) != 2 {
		t.Errorf("databases %v, want two", names)
	}
}

func TestSweepTemplatesDropsThoseOfEndedProcesses(t *testing.T) {
	databasetest.PostgresURL(t) // skips, or fails when required, without a DSN
	admin := os.Getenv(databasetest.EnvPostgresDSN)
	ended := exec.Command(os.Args[0], "-test.run=^$")
	if err := ended.Run(); err != nil {
		t.Fatal(err)
	}
	gone := databasetest.TemplateName(ended.Process.Pid, "deadbeef")
	kept := databasetest.TemplateName(os.Getpid(), "deadbeef")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) }) // after the drops below
	for _, name := range []string{gone, kept} {
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_, _ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize())
		})
	}
	databasetest.SweepTemplates(admin)
	for name, want := range map[string]bool{gone: false, kept: true} {
		var exists bool
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil || exists != want {
			t.Errorf("after the sweep, %s exists = %v, %v; want %v", name, exists, err, want)
		}
	}
}

// keys numbers the template keys of these tests, so that each run (go test -count=N) makes its own.
var keys atomic.Int64

func newKey(t *testing.T) string { return fmt.Sprintf("%s-%d", t.Name(), keys.Add(1)) }
