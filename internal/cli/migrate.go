package cli

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"lastmile/internal/platform/database"
)

// serviceStore describes one service's database: its name (the PostgreSQL schema and the SQLite file name)
// and its embedded migrations per dialect.
type serviceStore struct {
	Service  string
	SQLite   database.Migrations
	Postgres database.Migrations
}

// stores lists every service that owns a database, in dependency order. Route is stateless and has none;
// identity, courier and dispatch add themselves here as they land.
func stores() []serviceStore { return nil }

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
	dialect, err := database.DialectOf(dbURL)
	if err != nil {
		return usageError{fmt.Errorf("--database-url: %w", err)}
	}
	list := stores()
	if len(list) == 0 {
		fmt.Fprintln(env.Stdout, "migrate: no service in this build owns a database yet (route is stateless); nothing to do")
		return nil
	}
	for _, s := range list {
		if err := migrateStore(ctx, dialect, dataDir, dbURL, s); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "migrate: %s up to date (%s)\n", s.Service, dialect)
	}
	return nil
}

func migrateStore(ctx context.Context, dialect database.Dialect, dataDir, dbURL string, s serviceStore) error {
	switch dialect {
	case database.SQLite:
		db, err := database.OpenSQLite(ctx, filepath.Join(dataDir, s.Service+".db"))
		if err != nil {
			return err
		}
		defer db.Close()
		return database.MigrateSQLite(ctx, db, s.SQLite)
	case database.Postgres:
		pool, err := database.OpenPostgres(ctx, dbURL, database.PostgresOptions{Schema: s.Service})
		if err != nil {
			return err
		}
		defer pool.Close()
		return database.MigratePostgres(ctx, pool, s.Postgres)
	}
	return errors.New("unknown database dialect")
}
