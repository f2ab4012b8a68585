package cli

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/jackc/pgx/v5/pgxpool"

	courierpg "lastmile/internal/courier/postgres"
	couriersqlite "lastmile/internal/courier/sqlite"
	identitypg "lastmile/internal/identity/postgres"
	identitysqlite "lastmile/internal/identity/sqlite"
	"lastmile/internal/platform/database"
)

// serviceStore describes one service's database: its name (the PostgreSQL schema and the SQLite file name)
// and its embedded migrations per dialect.
type serviceStore struct {
	Service  string
	SQLite   database.Migrations
	Postgres database.Migrations
}

// stores lists every service that owns a database. Route is stateless and has none; dispatch adds itself
// here when it lands.
func stores() []serviceStore {
	return []serviceStore{
		{Service: "identity", SQLite: identitysqlite.Migrations(), Postgres: identitypg.Migrations()},
		{Service: "courier", SQLite: couriersqlite.Migrations(), Postgres: courierpg.Migrations()},
	}
}

// storeFor returns the registered store description of service.
func storeFor(service string) serviceStore {
	for _, s := range stores() {
		if s.Service == service {
			return s
		}
	}
	panic("no store registered for " + service)
}

func runMigrate(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("migrate", `Apply the embedded database migrations of every service that owns a store: SQLite files in --data-dir,
or one schema per service in PostgreSQL with --database-url. Safe to run concurrently and repeatedly.
serve also migrates at startup.`, env.Stderr)
	var dataDir, dbURL string
	fs.StringVar(&dataDir, "data-dir", "./lastmile-data", "state directory (SQLite files)")
	fs.StringVar(&dbURL, "database-url", "", "postgres://... for PostgreSQL; empty for SQLite in --data-dir")
	if err := fs.parse(args, env.Getenv); err != nil {
		return err
	}
	dialect, err := databaseDialect(dbURL)
	if err != nil {
		return err
	}
	list := stores()
	for _, s := range list {
		h, err := openDB(ctx, dialect, dataDir, dbURL, s, true)
		if err != nil {
			return err
		}
		h.Close()
		fmt.Fprintf(env.Stdout, "migrate: %s up to date (%s)\n", s.Service, dialect)
	}
	return nil
}

// databaseDialect validates --database-url.
func databaseDialect(url string) (database.Dialect, error) {
	d, err := database.DialectOf(url)
	if err != nil {
		return "", usageError{fmt.Errorf("--database-url: %w", err)}
	}
	return d, nil
}

// dbHandle is one service's open database: exactly one of SQL (SQLite) and Pool (PostgreSQL) is set.
type dbHandle struct {
	SQL  *sql.DB
	Pool *pgxpool.Pool
}

// Close closes whichever handle is open.
func (h dbHandle) Close() {
	if h.SQL != nil {
		h.SQL.Close()
	}
	if h.Pool != nil {
		h.Pool.Close()
	}
}

// openDB opens service s's database — <data-dir>/<service>.db for SQLite, schema <service> in PostgreSQL —
// and applies its migrations when migrate is set.
func openDB(ctx context.Context, dialect database.Dialect, dataDir, dbURL string, s serviceStore, migrate bool) (dbHandle, error) {
	switch dialect {
	case database.SQLite:
		db, err := database.OpenSQLite(ctx, filepath.Join(dataDir, s.Service+".db"))
		if err != nil {
			return dbHandle{}, fmt.Errorf("%s database: %w", s.Service, err)
		}
		if migrate {
			if err := database.MigrateSQLite(ctx, db, s.SQLite); err != nil {
				db.Close()
				return dbHandle{}, fmt.Errorf("migrate %s: %w", s.Service, err)
			}
		}
		return dbHandle{SQL: db}, nil
	case database.Postgres:
		pool, err := database.OpenPostgres(ctx, dbURL, database.PostgresOptions{Schema: s.Service})
		if err != nil {
			return dbHandle{}, fmt.Errorf("%s database: %w", s.Service, err)
		}
		if migrate {
			if err := database.MigratePostgres(ctx, pool, s.Postgres); err != nil {
				pool.Close()
				return dbHandle{}, fmt.Errorf("migrate %s: %w", s.Service, err)
			}
		}
		return dbHandle{Pool: pool}, nil
	}
	return dbHandle{}, errors.New("unknown database dialect")
}
