package cli

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/jackc/pgx/v5/pgxpool"

	"lastmile/internal/platform/database"
	"lastmile/internal/platform/eventlog"
	"lastmile/internal/platform/eventlog/sqllog"
	"lastmile/internal/platform/jobs"
)

func runMigrate(ctx context.Context, args []string, env Env) (err error) {
	fs := newFlagSet("migrate", `Apply the embedded database migrations of every service that owns a store: SQLite files in --data-dir,
or one schema per service in PostgreSQL with --database-url, and say which each applied. Safe to run
repeatedly; with PostgreSQL also concurrently. With SQLite it takes the data directory's lock, so it
refuses to run while serve (or another migrate) uses the directory: stop serve first, or let serve migrate
at startup.`, env.Stdout)
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
		pending, err := pendingMigrations(ctx, db, dataDir, m.name, *m.store)
		if err != nil {
			return err
		}
		h, err := openDB(ctx, db, dataDir, m.name, *m.store, nil)
		if err != nil {
			return err
		}
		h.Close()
		fmt.Fprintf(env.Stdout, "migrate: %s up to date (%s)%s\n", m.name, dialect, applied(pending[0]))
		if m.store.EventLog {
			fmt.Fprintf(env.Stdout, "migrate: %s event log up to date (%s)%s\n", m.name, dialect, applied(pending[1]))
		}
		if m.store.Jobs {
			fmt.Fprintf(env.Stdout, "migrate: %s jobs up to date (%s)\n", m.name, dialect)
		}
	}
	return nil
}

// pendingMigrations returns the names of the service's own migrations and of its event log's (empty
// without one) that the database of module name has not applied yet, so that migrate can say what it
// applied. (River's migrations, the jobs', are River's to report.)
func pendingMigrations(ctx context.Context, db databaseConfig, dataDir, name string, store storeDecl) ([2][]string, error) {
	var out [2][]string
	sets := []database.Migrations{store.SQLite}
	if db.Dialect == database.Postgres {
		sets[0] = store.Postgres
	}
	if store.EventLog {
		sets = append(sets, sqllog.Migrations(db.Dialect, name))
	}
	var status func(database.Migrations) ([]database.MigrationStatus, error)
	switch db.Dialect {
	case database.SQLite:
		sqlDB, err := database.OpenSQLiteWith(ctx, filepath.Join(dataDir, name+".db"), database.SQLiteOptions{})
		if err != nil {
			return out, fmt.Errorf("%s database: %w", name, err)
		}
		defer sqlDB.Close()
		status = func(m database.Migrations) ([]database.MigrationStatus, error) {
			return database.StatusSQLite(ctx, sqlDB, m)
		}
	case database.Postgres:
		pool, err := database.OpenPostgres(ctx, db.URL, database.PostgresOptions{Schema: name})
		if err != nil {
			return out, fmt.Errorf("%s database: %w", name, err)
		}
		defer pool.Close()
		status = func(m database.Migrations) ([]database.MigrationStatus, error) {
			return database.StatusPostgres(ctx, pool, m)
		}
	default:
		return out, errors.New("unknown database dialect")
	}
	for i, m := range sets {
		st, err := status(m)
		if err != nil {
			return out, err
		}
		for _, s := range st {
			if !s.Applied {
				out[i] = append(out[i], s.Name)
			}
		}
	}
	return out, nil
}

// applied says which migrations a migrate run applied: nothing when there were none.
func applied(names []string) string {
	switch len(names) {
	case 0:
		return ""
	case 1:
		return ": applied " + names[0]
	}
	return fmt.Sprintf(": applied %d, %s to %s", len(names), names[0], names[len(names)-1])
}

// databaseDialect validates --database-url: empty for SQLite in the data directory, or a postgres:// URL.
// Anything else is refused rather than read as SQLite, which would put the data into --data-dir while the
// operator believes it in PostgreSQL (a libpq "host=… dbname=…" string, a file path, "sqlite:…"). The
// value is shown with its password redacted.
func databaseDialect(url string) (database.Dialect, error) {
	d, err := database.DialectOf(url)
	if err != nil {
		return "", usageError{fmt.Errorf("--database-url: %w", err)}
	}
	if d != database.Postgres && url != "" {
		return "", usageError{fmt.Errorf("--database-url: %q is not a postgres:// or postgresql:// URL (SQLite takes none: its files are in --data-dir)", database.RedactURL(url))}
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
// applies its migrations when db.AutoMigrate is set: the service's own, then its event log's
// (storeDecl.EventLog), then River's (storeDecl.Jobs). A SQLite database's background work (its
// checkpointer) logs to logger (nil: slog.Default()).
func openDB(ctx context.Context, db databaseConfig, dataDir, name string, store storeDecl, logger *slog.Logger) (dbHandle, error) {
	switch db.Dialect {
	case database.SQLite:
		sqlDB, err := database.OpenSQLiteWith(ctx, filepath.Join(dataDir, name+".db"), database.SQLiteOptions{Logger: logger})
		if err != nil {
			return dbHandle{}, fmt.Errorf("%s database: %w", name, err)
		}
		if db.AutoMigrate {
			if err := database.MigrateSQLite(ctx, sqlDB, store.SQLite); err != nil {
				sqlDB.Close()
				return dbHandle{}, err // it names the service: "migrate <name>: …"
			}
			if store.EventLog {
				if err := database.MigrateSQLite(ctx, sqlDB, sqllog.Migrations(database.SQLite, name)); err != nil {
					sqlDB.Close()
					return dbHandle{}, fmt.Errorf("migrate %s event log: %w", name, err)
				}
			}
			if store.Jobs {
				if err := jobs.Migrate(ctx, sqlDB, database.SQLite, ""); err != nil {
					sqlDB.Close()
					return dbHandle{}, fmt.Errorf("migrate %s jobs: %w", name, err)
				}
			}
		} else if err := checkMigrated(store, func(m database.Migrations) error { return database.CheckSQLite(ctx, sqlDB, m) }, database.SQLite, name); err != nil {
			sqlDB.Close()
			return dbHandle{}, err
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
				return dbHandle{}, err // it names the service: "migrate <name>: …"
			}
			if store.EventLog {
				if err := database.MigratePostgres(ctx, pool, sqllog.Migrations(database.Postgres, name)); err != nil {
					pool.Close()
					return dbHandle{}, fmt.Errorf("migrate %s event log: %w", name, err)
				}
			}
			if store.Jobs {
				if err := migrateJobsPostgres(ctx, pool, name); err != nil {
					pool.Close()
					return dbHandle{}, fmt.Errorf("migrate %s jobs: %w", name, err)
				}
			}
		} else if err := checkMigrated(store, func(m database.Migrations) error { return database.CheckPostgres(ctx, pool, m) }, database.Postgres, name); err != nil {
			pool.Close()
			return dbHandle{}, err
		}
		return dbHandle{Pool: pool}, nil
	}
	return dbHandle{}, errors.New("unknown database dialect")
}

// checkMigrated refuses, for --auto-migrate=false, a database whose service or event-log migrations
// are not exactly this binary's (check is database.CheckSQLite or CheckPostgres on the open database).
func checkMigrated(store storeDecl, check func(database.Migrations) error, dialect database.Dialect, name string) error {
	m := store.SQLite
	if dialect == database.Postgres {
		m = store.Postgres
	}
	if err := check(m); err != nil {
		return err
	}
	if store.EventLog {
		if err := check(sqllog.Migrations(dialect, name)); err != nil {
			return fmt.Errorf("%s event log: %w", name, err)
		}
	}
	return nil
}

// migrateJobsPostgres creates River's tables in schema name, through a database/sql handle on pool.
func migrateJobsPostgres(ctx context.Context, pool *pgxpool.Pool, name string) error {
	db := database.SQLDB(pool)
	defer db.Close()
	return jobs.Migrate(ctx, db, database.Postgres, name)
}

// eventLog returns the event log of module name in its open database h, and runs it beside the servers
// (p.runners) for the life of the process. On PostgreSQL it listens for the notifications of every
// replica's appends (sqllog.Listener), so a commit anywhere reaches this replica's subscribers at once;
// on SQLite the process's own nudges and the poll suffice.
func (p *process) eventLog(name string, h dbHandle) (*eventlog.Log, error) {
	opts := eventlog.Options{
		Logger:    p.logger.With("module", name, "component", "eventlog"),
		Retention: eventlog.Retention{MaxAge: p.cfg.Database.EventRetention, MaxCount: p.cfg.Database.EventMaxCount},
	}
	var src *sqllog.Source
	if h.SQL != nil {
		src = sqllog.NewSource(h.SQL, database.SQLite)
	} else {
		db := database.SQLDB(h.Pool)
		// Cleanups run in reverse: the adapter lets go of its connections before the pool closes.
		p.cleanups = append(p.cleanups, func() { _ = db.Close() })
		src = sqllog.NewSource(db, database.Postgres)
		opts.Wake = sqllog.Listener(h.Pool)
	}
	feed, err := eventlog.New(src, opts)
	if err != nil {
		return nil, fmt.Errorf("%s event log: %w", name, err)
	}
	p.runners = append(p.runners, feed.Run)
	return feed, nil
}
