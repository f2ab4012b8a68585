package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// versionTable is goose's bookkeeping table. In PostgreSQL it lives in the service's schema
// (<service>.goose_db_version), so services sharing a database never share their migration history.
const versionTable = "goose_db_version"

// Migrations is one service's embedded migration set for one dialect.
type Migrations struct {
	// Service names the owner; in PostgreSQL it is also the schema the migrations run in. It must
	// match [a-z][a-z0-9_]* (at most 63 bytes, not pg_*).
	Service string
	// FS holds goose SQL files at its root (00001_init.sql, ...), usually an embed.FS passed
	// through fs.Sub.
	FS fs.FS
	// Logger receives one line per applied migration; nil discards them.
	Logger *slog.Logger
	// VersionTable names goose's bookkeeping table; empty means goose_db_version. A migration set that
	// the platform adds to every service's database (eventlog.Migrations) keeps its own table, so its
	// version numbers never mix with the service's. It must match [a-z][a-z0-9_]* (at most 63 bytes).
	VersionTable string
}

// table returns the version table's name.
func (m Migrations) table() string {
	if m.VersionTable == "" {
		return versionTable
	}
	return m.VersionTable
}

func (m Migrations) validate() error {
	if err := validSchema(m.Service); err != nil {
		return fmt.Errorf("migrations: service: %w", err)
	}
	if m.FS == nil {
		return fmt.Errorf("migrations %s: nil FS", m.Service)
	}
	if m.VersionTable != "" {
		if err := validSchema(m.VersionTable); err != nil {
			return fmt.Errorf("migrations %s: version table: %w", m.Service, err)
		}
	}
	return nil
}

func (m Migrations) provider(d goose.Dialect, db *sql.DB, table string) (*goose.Provider, error) {
	logger := m.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p, err := goose.NewProvider(d, db, m.FS,
		goose.WithTableName(table),
		goose.WithDisableGlobalRegistry(true),
		goose.WithSlog(logger.With("module", m.Service)),
	)
	if err != nil {
		return nil, fmt.Errorf("load migrations %s: %w", m.Service, err)
	}
	return p, nil
}

// MigrationStatus is the state of one migration, as StatusSQLite reports it.
type MigrationStatus struct {
	// Version is the number the file name starts with.
	Version int64
	// Name is the file name, such as 00001_init.sql.
	Name string
	// Applied reports whether the migration has run.
	Applied bool
	// AppliedAt is when it ran (zero when pending), as recorded by the database.
	AppliedAt time.Time
}

// MigrateSQLite applies m's pending migrations to db, each in its own transaction. It is idempotent,
// and safe to run from several processes at once: they take turns through an exclusive lock on a
// companion file (<db file>.migrate-lock), so a migration never runs twice.
//
// Each service must use its own database file: the version table and the event log are not prefixed.
func MigrateSQLite(ctx context.Context, db *sql.DB, m Migrations) error {
	if err := m.validate(); err != nil {
		return err
	}
	path, err := sqliteFile(ctx, db)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", m.Service, err)
	}
	if path != "" {
		unlock, err := lockSQLiteFile(ctx, path+".migrate-lock")
		if err != nil {
			return fmt.Errorf("migrate %s: %w", m.Service, err)
		}
		defer unlock()
	}
	p, err := m.provider(goose.DialectSQLite3, db, m.table())
	if err != nil {
		return err
	}
	if err := refuseNewerSchema(ctx, p, m); err != nil {
		return err
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate %s: %w", m.Service, err)
	}
	return nil
}

// refuseNewerSchema fails when the database records a migration newer than every one this binary
// embeds: a newer lastmile migrated it (a rollback, or an older replica left running). Serving it would
// write rows in the older shape into the newer schema, leaving the tables newer migrations added (and
// backfilled) out of step without an error; downgrades are not supported, so it is refused instead.
func refuseNewerSchema(ctx context.Context, p *goose.Provider, m Migrations) error {
	srcs := p.ListSources()
	if len(srcs) == 0 {
		return nil
	}
	known := srcs[len(srcs)-1].Version
	current, err := p.GetDBVersion(ctx)
	if err != nil {
		return fmt.Errorf("migrate %s: read schema version: %w", m.Service, err)
	}
	if current > known {
		return fmt.Errorf("migrate %s: the database's schema (%s) is at version %d, newer than this binary's %d: a newer lastmile migrated it; run that version or a later one (downgrades are not supported)", m.Service, m.table(), current, known)
	}
	return nil
}

// StatusSQLite lists m's migrations and whether each has been applied to db, without changing db.
func StatusSQLite(ctx context.Context, db *sql.DB, m Migrations) ([]MigrationStatus, error) {
	if err := m.validate(); err != nil {
		return nil, err
	}
	var n int
	err := db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", m.table()).Scan(&n)
	if err != nil {
		return nil, fmt.Errorf("migration status %s: %w", m.Service, err)
	}
	p, err := m.provider(goose.DialectSQLite3, db, m.table())
	if err != nil {
		return nil, err
	}
	return status(ctx, p, n > 0)
}

// CheckSQLite returns an error unless every one of m's migrations is applied to db and none newer is,
// without changing db: what a process that does not migrate (--auto-migrate=false) checks before it
// serves, so that a forgotten `lastmile migrate` is refused at start instead of failing call by call.
func CheckSQLite(ctx context.Context, db *sql.DB, m Migrations) error {
	if err := m.validate(); err != nil {
		return err
	}
	var n int
	err := db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", m.table()).Scan(&n)
	if err != nil {
		return fmt.Errorf("check migrations %s: %w", m.Service, err)
	}
	p, err := m.provider(goose.DialectSQLite3, db, m.table())
	if err != nil {
		return err
	}
	return checkCurrent(ctx, p, n > 0, m)
}

// CheckPostgres is CheckSQLite for schema m.Service of pool's database.
func CheckPostgres(ctx context.Context, pool *pgxpool.Pool, m Migrations) error {
	if err := m.validate(); err != nil {
		return err
	}
	var exists bool
	err := pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", m.Service+"."+m.table()).Scan(&exists)
	if err != nil {
		return fmt.Errorf("check migrations %s: %w", m.Service, err)
	}
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	p, err := m.provider(goose.DialectPostgres, db, m.Service+"."+m.table())
	if err != nil {
		return err
	}
	return checkCurrent(ctx, p, exists, m)
}

func checkCurrent(ctx context.Context, p *goose.Provider, tableExists bool, m Migrations) error {
	st, err := status(ctx, p, tableExists)
	if err != nil {
		return fmt.Errorf("check migrations %s: %w", m.Service, err)
	}
	var pending []string
	for _, s := range st {
		if !s.Applied {
			pending = append(pending, s.Name)
		}
	}
	if len(pending) > 0 {
		return fmt.Errorf("check migrations %s: %d of %d not applied (%s first): run lastmile migrate, or start without --auto-migrate=false", m.Service, len(pending), len(st), pending[0])
	}
	if tableExists {
		return refuseNewerSchema(ctx, p, m)
	}
	return nil
}

// sqliteFile returns the file behind db's main database, "" for a temporary or in-memory one.
func sqliteFile(ctx context.Context, db *sql.DB) (string, error) {
	var file string
	err := db.QueryRowContext(ctx, "SELECT file FROM pragma_database_list WHERE name = 'main'").Scan(&file)
	if err != nil {
		return "", fmt.Errorf("find database file: %w", err)
	}
	return file, nil
}

// lockSQLiteFile takes an exclusive SQLite lock on the database file at path (created empty if needed)
// and returns the function that releases it. SQLite's locks work between the connections of one
// process and between processes, are released by the OS when a process dies, and need nothing but
// the driver we already have; a lock row in the main database could not be held across goose's own
// write transactions.
func lockSQLiteFile(ctx context.Context, path string) (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// A short busy timeout, retried below, keeps the wait responsive to ctx: the driver's busy
	// handler is not.
	ldb, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(50)")
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	ldb.SetMaxOpenConns(1)
	conn, err := ldb.Conn(ctx)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("lock %s: %w", path, err), ldb.Close())
	}
	for {
		_, err := conn.ExecContext(ctx, "BEGIN EXCLUSIVE")
		if err == nil {
			break
		}
		if !isSQLiteBusy(err) || ctx.Err() != nil {
			return nil, errors.Join(fmt.Errorf("lock %s: %w", path, err), conn.Close(), ldb.Close())
		}
		select {
		case <-ctx.Done():
			return nil, errors.Join(fmt.Errorf("lock %s: %w", path, ctx.Err()), conn.Close(), ldb.Close())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return func() {
		// Closing the connection releases the lock even if ROLLBACK fails.
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		_ = conn.Close()
		_ = ldb.Close()
	}, nil
}

func isSQLiteBusy(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_BUSY
}

// MigratePostgres creates the schema m.Service if needed and applies m's pending migrations inside
// it, keeping goose's history in <service>.goose_db_version. Migration files use unqualified names:
// they run with search_path = <service>, public.
//
// It is idempotent and safe to run from several processes at once: a session advisory lock keyed by
// the service name serializes them, and a waiting process finds nothing left to do. The migrations
// run on a short-lived pool cloned from pool's configuration, so the search_path they need never
// leaks into pool's connections.
func MigratePostgres(ctx context.Context, pool *pgxpool.Pool, m Migrations) error {
	if err := m.validate(); err != nil {
		return err
	}
	mpool, err := migrationPool(ctx, pool, m.Service)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", m.Service, err)
	}
	defer mpool.Close()

	// The lock is held by its own session while goose works on another: goose's connection runs
	// transactions we do not control, and closing mpool ends both sessions even if unlocking fails.
	lock, err := mpool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrate %s: acquire connection: %w", m.Service, err)
	}
	defer lock.Release()
	key := advisoryKey(m.Service)
	if _, err := lock.Exec(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
		return fmt.Errorf("migrate %s: take advisory lock: %w", m.Service, err)
	}
	defer func() {
		_, _ = lock.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", key)
	}()
	// Under the lock: CREATE SCHEMA IF NOT EXISTS is not safe against itself running concurrently.
	if _, err := lock.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{m.Service}.Sanitize()); err != nil {
		return fmt.Errorf("migrate %s: create schema: %w", m.Service, err)
	}

	db := stdlib.OpenDBFromPool(mpool)
	defer db.Close()
	p, err := m.provider(goose.DialectPostgres, db, m.Service+"."+m.table())
	if err != nil {
		return err
	}
	if err := refuseNewerSchema(ctx, p, m); err != nil {
		return err
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate %s: %w", m.Service, err)
	}
	return nil
}

// StatusPostgres lists m's migrations and whether each has been applied in schema m.Service, without
// changing the database.
func StatusPostgres(ctx context.Context, pool *pgxpool.Pool, m Migrations) ([]MigrationStatus, error) {
	if err := m.validate(); err != nil {
		return nil, err
	}
	var exists bool
	err := pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", m.Service+"."+m.table()).Scan(&exists)
	if err != nil {
		return nil, fmt.Errorf("migration status %s: %w", m.Service, err)
	}
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	p, err := m.provider(goose.DialectPostgres, db, m.Service+"."+m.table())
	if err != nil {
		return nil, err
	}
	return status(ctx, p, exists)
}

// status reports p's migrations. Without a version table every migration is pending; asking goose
// then would create the table.
func status(ctx context.Context, p *goose.Provider, tableExists bool) ([]MigrationStatus, error) {
	if !tableExists {
		var out []MigrationStatus
		for _, s := range p.ListSources() {
			out = append(out, MigrationStatus{Version: s.Version, Name: filepath.Base(s.Path)})
		}
		return out, nil
	}
	st, err := p.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("migration status: %w", err)
	}
	out := make([]MigrationStatus, 0, len(st))
	for _, s := range st {
		out = append(out, MigrationStatus{
			Version:   s.Source.Version,
			Name:      filepath.Base(s.Source.Path),
			Applied:   s.State == goose.StateApplied,
			AppliedAt: s.AppliedAt,
		})
	}
	return out, nil
}

// migrationPool returns a small pool with pool's configuration whose connections use the service's
// schema.
func migrationPool(ctx context.Context, pool *pgxpool.Pool, service string) (*pgxpool.Pool, error) {
	cfg := pool.Config()
	cfg.MinConns = 0
	cfg.MinIdleConns = 0
	cfg.MaxConns = 2 // the lock session and goose's session
	cfg.ConnConfig.RuntimeParams["search_path"] = searchPath(service)
	mpool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open migration pool: %w", err)
	}
	return mpool, nil
}

// advisoryKey maps a service to its migration lock. The prefix keeps it apart from advisory locks
// taken for other purposes.
func advisoryKey(service string) int64 {
	h := fnv.New64a()
	h.Write([]byte("lastmile/migrate/" + service))
	return int64(h.Sum64())
}
