package cli

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/jackc/pgx/v5/pgxpool"

	"lastmile/internal/platform/database"
)

func runMigrate(ctx context.Context, args []string, env Env) (err error) {
	fs := newFlagSet("migrate", `Apply the embedded database migrations of every service that owns a store: SQLite files in --data-dir,
or one schema per service in PostgreSQL with --database-url. Safe to run repeatedly; with PostgreSQL also
concurrently. With SQLite it takes the data directory's lock, so it refuses to run while serve (or another
migrate) uses the directory: stop serve first, or let serve migrate at startup.`, env.Stderr)
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
	db := databaseConfig{URL: dbURL, Dialect: dialect, AutoMigrate: true}
	if dialect == database.SQLite {
		// Migrating files that a running serve has open would change the schema under its feet. With
		// PostgreSQL the data directory is not involved, and the migrations lock the database.
		lock, lockErr := lockDataDir(dataDir, "migrate", "stop it first (serve migrates at startup unless --auto-migrate=false)")
		if lockErr != nil {
			return lockErr
		}
		defer func() { err = errors.Join(err, lock.Release()) }()
	}
	for _, m := range modules() {
		if m.store == nil {
			continue
		}
		h, err := openDB(ctx, db, dataDir, m.name, *m.store)
		if err != nil {
			return err
		}
		h.Close()
		fmt.Fprintf(env.Stdout, "migrate: %s up to date (%s)\n", m.name, dialect)
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

// openDB opens module name's database — <data-dir>/<name>.db for SQLite, schema <name> in PostgreSQL — and
// applies its migrations when db.AutoMigrate is set.
func openDB(ctx context.Context, db databaseConfig, dataDir, name string, store storeDecl) (dbHandle, error) {
	switch db.Dialect {
	case database.SQLite:
		sqlDB, err := database.OpenSQLite(ctx, filepath.Join(dataDir, name+".db"))
		if err != nil {
			return dbHandle{}, fmt.Errorf("%s database: %w", name, err)
		}
		if db.AutoMigrate {
			if err := database.MigrateSQLite(ctx, sqlDB, store.SQLite); err != nil {
				sqlDB.Close()
				return dbHandle{}, fmt.Errorf("migrate %s: %w", name, err)
			}
		}
		return dbHandle{SQL: sqlDB}, nil
	case database.Postgres:
		pool, err := database.OpenPostgres(ctx, db.URL, database.PostgresOptions{Schema: name})
		if err != nil {
			return dbHandle{}, fmt.Errorf("%s database: %w", name, err)
		}
		if db.AutoMigrate {
			if err := database.MigratePostgres(ctx, pool, store.Postgres); err != nil {
				pool.Close()
				return dbHandle{}, fmt.Errorf("migrate %s: %w", name, err)
			}
		}
		return dbHandle{Pool: pool}, nil
	}
	return dbHandle{}, errors.New("unknown database dialect")
}
