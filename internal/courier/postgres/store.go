// Package postgres runs the courier store (sqlstore.Store) on PostgreSQL, through pgx's database/sql
// adapter on a pool whose search_path starts with the courier schema (database.OpenPostgres with Schema
// "courier"). What is PostgreSQL's own lives here: the migrations, the row lock and the reading of the
// driver's errors.
//
// Times are timestamptz, which keeps microseconds. Every transaction that checks a courier before
// writing locks the courier's row with SELECT ... FOR NO KEY UPDATE first (see package sqlstore).
package postgres

import (
	"embed"

	"github.com/jackc/pgx/v5/pgxpool"

	"lastmile/internal/courier/sqlstore"
	"lastmile/internal/platform/database"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the courier service's PostgreSQL migrations, for database.MigratePostgres; they
// create their tables in the schema "courier".
func Migrations() database.Migrations {
	return database.EmbeddedMigrations("courier", migrationFiles, "migrations")
}

// New returns the courier store on pool, whose connections must resolve the courier schema's tables
// (see database.PostgresOptions.Schema) migrated with Migrations. Close the store before pool: it
// releases the database/sql handle opened over the pool, not the pool itself.
func New(pool *pgxpool.Pool) *sqlstore.Store {
	db := database.SQLDB(pool)
	return sqlstore.New(db, sqlstore.Engine{Dialect: database.Postgres, Lock: " FOR NO KEY UPDATE", MapError: constraints.MapPostgres}, db.Close)
}

// constraints says what the store's constraint violations mean to callers.
var constraints = database.Constraints{
	Unique: map[string]string{
		"couriers_user_id_key": "user already has a courier profile",
		"couriers_pkey":        "courier id already exists",
		"claims_pkey":          "task is already claimed",
	},
	ForeignKey: "courier not found",
}
