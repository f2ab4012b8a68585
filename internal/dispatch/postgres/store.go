// Package postgres runs the dispatch store (sqlstore.Store) on PostgreSQL, through pgx's database/sql
// adapter on a pool whose search_path starts with the dispatch schema (database.OpenPostgres with Schema
// "dispatch"). What is PostgreSQL's own lives here: the migrations, the row locks and the reading of the
// driver's errors.
//
// Times are timestamptz, which keeps microseconds. Every transaction that decides on a row locks it
// with SELECT ... FOR UPDATE first; LeaseDue picks with FOR UPDATE SKIP LOCKED, so replicas leasing at
// once take different tasks. A transaction PostgreSQL aborts to break a deadlock or a serialization
// conflict runs again (see package sqlstore).
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"lastmile/internal/dispatch/sqlstore"
	"lastmile/internal/platform/database"
	"lastmile/internal/platform/eventlog/sqllog"
	"lastmile/internal/platform/jobs"
)

// Schema is the PostgreSQL schema of the dispatch service's tables.
const Schema = sqlstore.Service

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the dispatch service's PostgreSQL migrations, for database.MigratePostgres; they
// create their tables in the schema "dispatch". The event log's (sqllog.Migrations(database.Postgres,
// sqlstore.Service)) and River's (jobs.Migrate) are separate.
func Migrations() database.Migrations {
	return database.EmbeddedMigrations(sqlstore.Service, migrationFiles, "migrations")
}

// Migrate applies everything the store needs to pool's database: dispatch's migrations, then the event
// log's, then River's tables, all in the dispatch schema.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	if err := database.MigratePostgres(ctx, pool, Migrations()); err != nil {
		return fmt.Errorf("migrate dispatch: %w", err)
	}
	if err := database.MigratePostgres(ctx, pool, sqllog.Migrations(database.Postgres, sqlstore.Service)); err != nil {
		return fmt.Errorf("migrate dispatch event log: %w", err)
	}
	db := database.SQLDB(pool)
	defer db.Close()
	if err := jobs.Migrate(ctx, db, database.Postgres, Schema); err != nil {
		return fmt.Errorf("migrate dispatch jobs: %w", err)
	}
	return nil
}

// New returns the dispatch store on pool, whose connections must resolve the dispatch schema's tables
// (see database.PostgresOptions.Schema) migrated with Migrations and the event log's (Migrate does both).
// Close the store before pool: it releases the database/sql handle opened over the pool (Store.DB), not
// the pool itself. Set its job queue with SetJobs before use.
func New(pool *pgxpool.Pool) *sqlstore.Store {
	db := database.SQLDB(pool)
	return sqlstore.New(db, sqlstore.Engine{
		Dialect:    database.Postgres,
		Lock:       " FOR UPDATE",
		SkipLocked: " FOR UPDATE SKIP LOCKED",
		MapError:   constraints.MapPostgres,
		Retryable:  retryable,
		RefuseNUL:  true,
	}, db.Close)
}

// constraints says what the store's constraint violations mean to callers.
var constraints = database.Constraints{
	Unique: map[string]string{
		"tasks_pkey":        "task id already exists",
		"tasks_request_key": "request id already used",
		"commands_pkey":     "command already recorded",
		"decisions_pkey":    "decision already recorded",
		"offers_pkey":       "offer already recorded",
		"sessions_pkey":     "session already exists",
	},
	ForeignKey: "task not found",
}

// retryable reports a transaction that PostgreSQL aborted to break a deadlock or a serialization
// conflict: running it again is expected to succeed.
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}
