// Package databasetest gives tests a fresh SQLite file or a fresh PostgreSQL database, removed when
// the test ends.
//
// PostgreSQL comes from LASTMILE_TEST_POSTGRES_DSN, a postgres:// URL of a role allowed to create
// databases. Without it the PostgreSQL tests skip, unless LASTMILE_REQUIRE_POSTGRES=1 (set by CI) makes
// a missing database a failure.
package databasetest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"lastmile/internal/platform/database"
)

// Environment variables read by PostgresURL.
const (
	// EnvPostgresDSN names the postgres:// URL of a server and role that may create databases.
	EnvPostgresDSN = "LASTMILE_TEST_POSTGRES_DSN"
	// EnvRequirePostgres, set to "1", turns a missing EnvPostgresDSN from a skip into a failure.
	EnvRequirePostgres = "LASTMILE_REQUIRE_POSTGRES"
)

// setupTimeout bounds creating and dropping a test database.
const setupTimeout = 30 * time.Second

// SQLite opens a new database file in a temporary directory with database.OpenSQLite and closes it when
// the test ends.
func SQLite(t testing.TB) *sql.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	return openSQLite(ctx, t, filepath.Join(t.TempDir(), "test.db"))
}

// openSQLite opens the SQLite database at path, closed when the test ends.
func openSQLite(ctx context.Context, t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := database.OpenSQLite(ctx, path)
	if err != nil {
		t.Fatalf("databasetest: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("databasetest: close %s: %v", path, err)
		}
	})
	return db
}

// MigratedSQLite is SQLite with migrate applied: the database is a new file in a temporary directory,
// closed when the test ends, whose content is what migrate leaves in a new database. The first call
// with a given key in a test binary runs migrate on a template file, and every call with that key
// copies the template: under the race detector the pure-Go SQLite takes about two seconds to run a
// service's migrations, which a test starting a service would otherwise pay each time. The same key
// must always come with the same migrate; the migrations themselves are tested by their packages.
func MigratedSQLite(t testing.TB, key string, migrate func(context.Context, *sql.DB) error) *sql.DB {
	t.Helper()
	data, err := sqliteTemplate(key, migrate)
	if err != nil {
		t.Fatalf("databasetest: template %s: %v", key, err)
	}
	path := filepath.Join(t.TempDir(), "test.db")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatalf("databasetest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	return openSQLite(ctx, t, path)
}

// sqliteTemplates holds, per MigratedSQLite key, the bytes of a migrated database file.
var sqliteTemplates sync.Map // key -> *sqliteTemplateOnce

type sqliteTemplateOnce struct {
	once sync.Once
	data []byte
	err  error
}

// migrateTimeout bounds migrating a template: under -race on a loaded machine (load 22) SQLite's
// migrations of one service took more than 30 s.
const migrateTimeout = 5 * time.Minute

// sqliteTemplate returns the template of key, making it on the first call: a new database migrated
// with migrate and closed, which folds its WAL into the file, read back whole.
func sqliteTemplate(key string, migrate func(context.Context, *sql.DB) error) ([]byte, error) {
	v, _ := sqliteTemplates.LoadOrStore(key, &sqliteTemplateOnce{})
	tpl := v.(*sqliteTemplateOnce)
	tpl.once.Do(func() {
		dir, err := os.MkdirTemp("", "lastmile-databasetest-")
		if err != nil {
			tpl.err = err
			return
		}
		defer os.RemoveAll(dir)
		tpl.data, tpl.err = migrateSQLiteFile(filepath.Join(dir, "template.db"), migrate)
	})
	return tpl.data, tpl.err
}

func migrateSQLiteFile(path string, migrate func(context.Context, *sql.DB) error) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), migrateTimeout)
	defer cancel()
	db, err := database.OpenSQLite(ctx, path)
	if err != nil {
		return nil, err
	}
	if err := migrate(ctx, db); err != nil {
		return nil, errors.Join(fmt.Errorf("migrate: %w", err), db.Close())
	}
	if _, err := db.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		return nil, errors.Join(fmt.Errorf("checkpoint: %w", err), db.Close())
	}
	if err := db.Close(); err != nil {
		return nil, err
	}
	// Closing the last connection checkpoints the WAL and removes it; what is left must be one file.
	if fi, err := os.Stat(path + "-wal"); err == nil && fi.Size() > 0 {
		return nil, fmt.Errorf("%s-wal still holds %d bytes after closing", path, fi.Size())
	}
	return os.ReadFile(path)
}

// PostgresURL creates an empty database lastmile_test_<random> on the server named by
// LASTMILE_TEST_POSTGRES_DSN and returns a URL for it; the database is dropped (with FORCE, so open
// connections do not keep it alive) when the test ends. Without the variable the test is skipped, or
// fails when LASTMILE_REQUIRE_POSTGRES=1.
func PostgresURL(t testing.TB) string {
	t.Helper()
	return createDatabase(t, adminDSN(t), "")
}

// adminDSN returns LASTMILE_TEST_POSTGRES_DSN, skipping the test without it (failing it when
// LASTMILE_REQUIRE_POSTGRES=1) and failing it when it is not a postgres:// URL.
func adminDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(EnvPostgresDSN)
	if dsn == "" {
		if os.Getenv(EnvRequirePostgres) == "1" {
			t.Fatalf("databasetest: %s=1 but %s is not set", EnvRequirePostgres, EnvPostgresDSN)
		}
		t.Skipf("databasetest: PostgreSQL tests skipped: set %s to a postgres:// URL (a role that may CREATE DATABASE) to run them", EnvPostgresDSN)
	}
	admin, err := url.Parse(dsn)
	if err != nil || (admin.Scheme != "postgres" && admin.Scheme != "postgresql") {
		t.Fatalf("databasetest: %s must be a postgres:// URL, got %q", EnvPostgresDSN, database.RedactURL(dsn))
	}
	return dsn
}

// createDatabase creates lastmile_test_<random>, a copy of template when it is not "", dropped when the
// test ends, and returns its URL.
func createDatabase(t testing.TB, dsn, template string) string {
	t.Helper()
	name := "lastmile_test_" + randomHex()
	ident := pgx.Identifier{name}.Sanitize()
	stmt := "CREATE DATABASE " + ident
	if template != "" {
		stmt += " TEMPLATE " + pgx.Identifier{template}.Sanitize()
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if err := adminExec(ctx, dsn, stmt); err != nil {
		t.Fatalf("databasetest: create database %s on %s: %v", name, database.RedactURL(dsn), err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		if err := adminExec(ctx, dsn, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			t.Errorf("databasetest: drop database %s: %v", name, err)
		}
	})
	return databaseURL(dsn, name)
}

// databaseURL returns dsn naming database name instead of its own.
func databaseURL(dsn, name string) string {
	u, _ := url.Parse(dsn) // adminDSN parsed it
	u.Path = "/" + name
	u.RawPath = ""
	return u.String()
}

func randomHex() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// Postgres opens a pool on a fresh database (PostgresURL) whose connections use schema first in their
// search_path, and closes it when the test ends. The schema itself is not created: database.
// MigratePostgres does that. Pass "" to keep the default search_path.
func Postgres(t testing.TB, schema string) *pgxpool.Pool {
	t.Helper()
	return openPool(t, PostgresURL(t), schema)
}

// openPool opens a pool on u with schema first in its search_path, closed when the test ends.
func openPool(t testing.TB, u, schema string) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	pool, err := database.OpenPostgres(ctx, u, database.PostgresOptions{Schema: schema, MaxConns: 8})
	if err != nil {
		t.Fatalf("databasetest: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// MigratedPostgres is Postgres with migrate applied: the pool's database is a fresh one, dropped when the
// test ends, whose content is what migrate leaves in a new database. The first call with a given key in
// a test binary creates a template database and runs migrate on it (through a pool with schema first in
// its search_path, as the test's); every call with that key creates its database as a copy of the
// template (CREATE DATABASE ... TEMPLATE), which takes a fraction of the time the migrations do. The
// same key must always come with the same schema and migrate; the migrations themselves are tested by
// their packages.
//
// A template lives as long as the test binary: it is named lastmile_tmpl_<host>_<pid>_<random>, and the
// first MigratedPostgres of each binary drops the templates of this host whose process has ended.
func MigratedPostgres(t testing.TB, schema, key string, migrate func(context.Context, *pgxpool.Pool) error) *pgxpool.Pool {
	t.Helper()
	dsn := adminDSN(t)
	template, err := postgresTemplate(dsn, schema, key, migrate)
	if err != nil {
		t.Fatalf("databasetest: template %s: %v", key, err)
	}
	return openPool(t, createDatabase(t, dsn, template), schema)
}

// postgresTemplates holds, per MigratedPostgres key, the name of a migrated template database.
var postgresTemplates sync.Map // key -> *postgresTemplateOnce

type postgresTemplateOnce struct {
	once sync.Once
	name string
	err  error
}

// sweepOnce drops the templates that ended processes left behind, once per test binary.
var sweepOnce sync.Once

func postgresTemplate(dsn, schema, key string, migrate func(context.Context, *pgxpool.Pool) error) (string, error) {
	sweepOnce.Do(func() { sweepTemplates(dsn) })
	v, _ := postgresTemplates.LoadOrStore(key, &postgresTemplateOnce{})
	tpl := v.(*postgresTemplateOnce)
	tpl.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), migrateTimeout)
		defer cancel()
		name := fmt.Sprintf("%s%s_%d_%s", templatePrefix, hostTag(), os.Getpid(), randomHex()[:8])
		if err := adminExec(ctx, dsn, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
			tpl.err = fmt.Errorf("create database %s on %s: %w", name, database.RedactURL(dsn), err)
			return
		}
		pool, err := database.OpenPostgres(ctx, databaseURL(dsn, name), database.PostgresOptions{Schema: schema, MaxConns: 8})
		if err == nil {
			err = migrate(ctx, pool)
			pool.Close() // a template must have no connection when it is copied
		}
		if err != nil {
			tpl.err = errors.Join(fmt.Errorf("migrate: %w", err), adminExec(ctx, dsn, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"))
			return
		}
		tpl.name = name
	})
	return tpl.name, tpl.err
}

// templatePrefix starts the name of every template database; after it come the host's tag, the process
// id and a random suffix.
const templatePrefix = "lastmile_tmpl_"

// hostTag is 8 hex digits of the host's name, so that a sweep only judges the processes it can see.
func hostTag() string {
	h, _ := os.Hostname()
	sum := sha256.Sum256([]byte(h))
	return hex.EncodeToString(sum[:4])
}

// sweepTemplates drops the templates of this host whose process has ended (a test binary cannot drop its
// own: nothing runs after its last test). Failures are ignored: a template left over costs disk only.
func sweepTemplates(dsn string) {
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, "SELECT datname FROM pg_database WHERE starts_with(datname, $1)", templatePrefix+hostTag()+"_")
	if err != nil {
		return
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return
	}
	for _, name := range names {
		var pid int
		if _, err := fmt.Sscanf(strings.TrimPrefix(name, templatePrefix+hostTag()+"_"), "%d_", &pid); err != nil || processAlive(pid) {
			continue
		}
		_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	}
}

// processAlive reports whether process pid may still run: only a process known to have ended is not.
func processAlive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	return !errors.Is(p.Signal(syscall.Signal(0)), os.ErrProcessDone)
}

// adminExec runs one statement on its own connection: CREATE and DROP DATABASE cannot run inside the
// transaction a pool might wrap them in, and a fresh connection avoids holding one for the test.
func adminExec(ctx context.Context, dsn, stmt string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, stmt)
	return err
}
