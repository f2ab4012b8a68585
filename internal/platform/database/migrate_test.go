package database_test

import (
	"context"
	"database/sql"
	"io/fs"
	"path/filepath"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/jackc/pgx/v5/pgxpool"

	"lastmile/internal/platform/database"
	"lastmile/internal/platform/database/databasetest"
)

// migrationsFS returns a two-step migration set in the shape services use: the schema (two tables),
// then a data migration, whose row count shows whether it ran more than once.
func migrationsFS() fstest.MapFS {
	return fstest.MapFS{
		"00001_init.sql": {Data: []byte("-- +goose Up\n" +
			"CREATE TABLE things (id INTEGER PRIMARY KEY, name TEXT NOT NULL);\n" +
			"CREATE TABLE others (id INTEGER PRIMARY KEY, thing_id INTEGER NOT NULL REFERENCES things (id));\n" +
			"-- +goose Down\nDROP TABLE others;\nDROP TABLE things;\n")},
		"00002_seed.sql": {Data: []byte("-- +goose Up\nINSERT INTO things (id, name) VALUES (1, 'seed');\n" +
			"-- +goose Down\nDELETE FROM things WHERE id = 1;\n")},
		"README.md": {Data: []byte("not a migration")},
	}
}

// onlyFirst returns the first migration of fsys.
func onlyFirst(fsys fs.FS) fs.FS {
	return fstest.MapFS{"00001_init.sql": fsys.(fstest.MapFS)["00001_init.sql"]}
}

func sqliteMigrations() database.Migrations {
	return database.Migrations{Service: "courier", FS: migrationsFS()}
}

func postgresMigrations(service string) database.Migrations {
	return database.Migrations{Service: service, FS: migrationsFS()}
}

// migratedSQLite returns a SQLite database with the test migrations applied.
func migratedSQLite(t *testing.T) *sql.DB {
	t.Helper()
	db := databasetest.SQLite(t)
	if err := database.MigrateSQLite(testContext(t), db, sqliteMigrations()); err != nil {
		t.Fatalf("MigrateSQLite: %v", err)
	}
	return db
}

// migratedPostgres returns a pool on a fresh database, migrated in schema "dispatch", whose
// search_path leads there.
func migratedPostgres(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool := databasetest.Postgres(t, "dispatch")
	if err := database.MigratePostgres(testContext(t), pool, postgresMigrations("dispatch")); err != nil {
		t.Fatalf("MigratePostgres: %v", err)
	}
	return pool
}

var wantPending = []database.MigrationStatus{
	{Version: 1, Name: "00001_init.sql"},
	{Version: 2, Name: "00002_seed.sql"},
}

var wantApplied = []database.MigrationStatus{
	{Version: 1, Name: "00001_init.sql", Applied: true},
	{Version: 2, Name: "00002_seed.sql", Applied: true},
}

// ignoreAppliedAt compares statuses without their database timestamps.
var ignoreAppliedAt = cmpopts.IgnoreFields(database.MigrationStatus{}, "AppliedAt")

func sqliteTableExists(ctx context.Context, t *testing.T, db *sql.DB, name string) bool {
	t.Helper()
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

func TestMigrateSQLite(t *testing.T) {
	ctx := testContext(t)
	db := databasetest.SQLite(t)
	m := sqliteMigrations()

	got, err := database.StatusSQLite(ctx, db, m)
	if err != nil {
		t.Fatalf("StatusSQLite before: %v", err)
	}
	if diff := cmp.Diff(wantPending, got); diff != "" {
		t.Errorf("status before migrating (-want +got):\n%s", diff)
	}
	if sqliteTableExists(ctx, t, db, "goose_db_version") {
		t.Error("StatusSQLite created the version table; it must not change the database")
	}

	for i := range 2 {
		if err := database.MigrateSQLite(ctx, db, m); err != nil {
			t.Fatalf("MigrateSQLite #%d: %v", i+1, err)
		}
	}
	for _, table := range []string{"things", "others", "goose_db_version"} {
		if !sqliteTableExists(ctx, t, db, table) {
			t.Errorf("table %s missing after migrating", table)
		}
	}
	var seeds int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM things").Scan(&seeds); err != nil || seeds != 1 {
		t.Errorf("rows in things = %d, %v, want 1, nil (the seed migration ran once)", seeds, err)
	}

	got, err = database.StatusSQLite(ctx, db, m)
	if err != nil {
		t.Fatalf("StatusSQLite after: %v", err)
	}
	if diff := cmp.Diff(wantApplied, got, ignoreAppliedAt); diff != "" {
		t.Errorf("status after migrating (-want +got):\n%s", diff)
	}
	for _, s := range got {
		if s.AppliedAt.IsZero() {
			t.Errorf("migration %s: AppliedAt is zero", s.Name)
		}
	}
}

// TestMigrateRefusesNewerSchema: a binary whose migrations stop at 1, on a database a newer binary took
// to 2, refuses it with the versions named, and leaves it as it was.
func TestMigrateRefusesNewerSchema(t *testing.T) {
	ctx := testContext(t)
	const want = "migrate courier: the database's schema (goose_db_version) is at version 2, newer than this binary's 1: a newer lastmile migrated it; run that version or a later one (downgrades are not supported)"
	db := migratedSQLite(t)
	old := database.Migrations{Service: "courier", FS: onlyFirst(migrationsFS())}
	if err := database.MigrateSQLite(ctx, db, old); err == nil || err.Error() != want {
		t.Errorf("MigrateSQLite with older migrations = %v, want %q", err, want)
	}
	got, err := database.StatusSQLite(ctx, db, sqliteMigrations())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantApplied, got, ignoreAppliedAt); diff != "" {
		t.Errorf("status after the refusal (-want +got):\n%s", diff)
	}
}

func TestMigratePostgresRefusesNewerSchema(t *testing.T) {
	ctx := testContext(t)
	const want = "migrate dispatch: the database's schema (goose_db_version) is at version 2, newer than this binary's 1: a newer lastmile migrated it; run that version or a later one (downgrades are not supported)"
	pool := migratedPostgres(t)
	old := database.Migrations{Service: "dispatch", FS: onlyFirst(migrationsFS())}
	if err := database.MigratePostgres(ctx, pool, old); err == nil || err.Error() != want {
		t.Errorf("MigratePostgres with older migrations = %v, want %q", err, want)
	}
}

// TestCheckSQLite: a database with a migration pending, or one newer than the binary's, is refused
// without being changed; one exactly current passes.
func TestCheckSQLite(t *testing.T) {
	ctx := testContext(t)
	db := databasetest.SQLite(t)
	m := sqliteMigrations()
	const pending = "check migrations courier: 2 of 2 not applied (00001_init.sql first): run lastmile migrate, or start without --auto-migrate=false"
	if err := database.CheckSQLite(ctx, db, m); err == nil || err.Error() != pending {
		t.Errorf("CheckSQLite on an empty database = %v, want %q", err, pending)
	}
	if sqliteTableExists(ctx, t, db, "goose_db_version") {
		t.Error("CheckSQLite created the version table; it must not change the database")
	}
	if err := database.MigrateSQLite(ctx, db, database.Migrations{Service: "courier", FS: onlyFirst(migrationsFS())}); err != nil {
		t.Fatal(err)
	}
	const second = "check migrations courier: 1 of 2 not applied (00002_seed.sql first): run lastmile migrate, or start without --auto-migrate=false"
	if err := database.CheckSQLite(ctx, db, m); err == nil || err.Error() != second {
		t.Errorf("CheckSQLite with one pending = %v, want %q", err, second)
	}
	if err := database.MigrateSQLite(ctx, db, m); err != nil {
		t.Fatal(err)
	}
	if err := database.CheckSQLite(ctx, db, m); err != nil {
		t.Errorf("CheckSQLite on a current database = %v, want nil", err)
	}
	const newer = "migrate courier: the database's schema (goose_db_version) is at version 2, newer than this binary's 1: a newer lastmile migrated it; run that version or a later one (downgrades are not supported)"
	if err := database.CheckSQLite(ctx, db, database.Migrations{Service: "courier", FS: onlyFirst(migrationsFS())}); err == nil || err.Error() != newer {
		t.Errorf("CheckSQLite by an older binary = %v, want %q", err, newer)
	}
}

func TestCheckPostgres(t *testing.T) {
	ctx := testContext(t)
	pool := databasetest.Postgres(t, "")
	m := postgresMigrations("dispatch")
	const pending = "check migrations dispatch: 2 of 2 not applied (00001_init.sql first): run lastmile migrate, or start without --auto-migrate=false"
	if err := database.CheckPostgres(ctx, pool, m); err == nil || err.Error() != pending {
		t.Errorf("CheckPostgres on an empty database = %v, want %q", err, pending)
	}
	if err := database.MigratePostgres(ctx, pool, m); err != nil {
		t.Fatal(err)
	}
	if err := database.CheckPostgres(ctx, pool, m); err != nil {
		t.Errorf("CheckPostgres on a current database = %v, want nil", err)
	}
}

func TestMigrateSQLiteConcurrentProcesses(t *testing.T) {
	ctx := testContext(t)
	path := filepath.Join(t.TempDir(), "courier.db")
	// Two pools on one file behave like two processes: nothing is shared but the file.
	dbs := make([]*sql.DB, 4)
	for i := range dbs {
		db, err := database.OpenSQLite(ctx, path)
		if err != nil {
			t.Fatalf("OpenSQLite: %v", err)
		}
		defer db.Close()
		dbs[i] = db
	}
	// With the version table already there, as when replicas roll out a new migration, nothing
	// slows the second process down: only the lock keeps it from applying 00002 again.
	first := sqliteMigrations()
	first.FS = onlyFirst(first.FS)
	if err := database.MigrateSQLite(ctx, dbs[0], first); err != nil {
		t.Fatalf("MigrateSQLite 00001: %v", err)
	}
	errs := make([]error, len(dbs))
	var wg sync.WaitGroup
	for i, db := range dbs {
		wg.Go(func() { errs[i] = database.MigrateSQLite(ctx, db, sqliteMigrations()) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("MigrateSQLite #%d: %v", i+1, err)
		}
	}
	var seeds int
	if err := dbs[0].QueryRowContext(ctx, "SELECT count(*) FROM things").Scan(&seeds); err != nil || seeds != 1 {
		t.Errorf("rows in things = %d, %v, want 1, nil (the seed migration ran once)", seeds, err)
	}
}

func TestMigrateRejectsBadMigrations(t *testing.T) {
	ctx := testContext(t)
	db := databasetest.SQLite(t)
	for _, m := range []database.Migrations{
		{Service: "", FS: migrationsFS()},
		{Service: "Courier", FS: migrationsFS()},
		{Service: "pg_toast", FS: migrationsFS()},
		{Service: "courier; DROP SCHEMA public", FS: migrationsFS()},
		{Service: "courier"},
		{Service: "courier", FS: fstest.MapFS{}},
		{Service: "courier", FS: migrationsFS(), VersionTable: "Versions"},
		{Service: "courier", FS: migrationsFS(), VersionTable: "v; DROP TABLE things"},
	} {
		if err := database.MigrateSQLite(ctx, db, m); err == nil {
			t.Errorf("MigrateSQLite(%+v) = nil, want an error", m)
		}
	}
}

// extraMigrations is a second migration set for the same database, as the platform adds one (the event
// log's) to every service: its own version table keeps its history apart.
func extraMigrations(service string) database.Migrations {
	return database.Migrations{Service: service, VersionTable: "extra_goose_version", FS: fstest.MapFS{
		"00001_extra.sql": {Data: []byte("-- +goose Up\nCREATE TABLE extra (id INTEGER PRIMARY KEY);\n-- +goose Down\nDROP TABLE extra;\n")},
	}}
}

func TestMigrateSQLiteSecondSetWithItsOwnVersionTable(t *testing.T) {
	ctx := testContext(t)
	db := migratedSQLite(t)
	extra := extraMigrations("courier")
	got, err := database.StatusSQLite(ctx, db, extra)
	if err != nil {
		t.Fatalf("StatusSQLite extra before: %v", err)
	}
	if diff := cmp.Diff([]database.MigrationStatus{{Version: 1, Name: "00001_extra.sql"}}, got); diff != "" {
		t.Errorf("extra status before migrating (-want +got):\n%s", diff)
	}
	if err := database.MigrateSQLite(ctx, db, extra); err != nil {
		t.Fatalf("MigrateSQLite extra: %v", err)
	}
	if !sqliteTableExists(ctx, t, db, "extra") || !sqliteTableExists(ctx, t, db, "extra_goose_version") {
		t.Error("extra migration or its version table missing")
	}
	got, err = database.StatusSQLite(ctx, db, extra)
	if err != nil {
		t.Fatalf("StatusSQLite extra after: %v", err)
	}
	if diff := cmp.Diff([]database.MigrationStatus{{Version: 1, Name: "00001_extra.sql", Applied: true}}, got, ignoreAppliedAt); diff != "" {
		t.Errorf("extra status after migrating (-want +got):\n%s", diff)
	}
	// The service's own history is untouched: both its migrations still read as applied.
	got, err = database.StatusSQLite(ctx, db, sqliteMigrations())
	if err != nil {
		t.Fatalf("StatusSQLite service: %v", err)
	}
	if diff := cmp.Diff(wantApplied, got, ignoreAppliedAt); diff != "" {
		t.Errorf("service status after the extra set (-want +got):\n%s", diff)
	}
}

func TestMigratePostgresSecondSetWithItsOwnVersionTable(t *testing.T) {
	ctx := testContext(t)
	pool := migratedPostgres(t)
	if err := database.MigratePostgres(ctx, pool, extraMigrations("dispatch")); err != nil {
		t.Fatalf("MigratePostgres extra: %v", err)
	}
	for _, table := range []string{"dispatch.extra", "dispatch.extra_goose_version"} {
		if !postgresTableExists(ctx, t, pool, table) {
			t.Errorf("table %s missing after migrating", table)
		}
	}
	got, err := database.StatusPostgres(ctx, pool, postgresMigrations("dispatch"))
	if err != nil {
		t.Fatalf("StatusPostgres service: %v", err)
	}
	if diff := cmp.Diff(wantApplied, got, ignoreAppliedAt); diff != "" {
		t.Errorf("service status after the extra set (-want +got):\n%s", diff)
	}
}

func TestMigrateSQLiteReportsFailingMigration(t *testing.T) {
	ctx := testContext(t)
	db := databasetest.SQLite(t)
	m := database.Migrations{Service: "courier", FS: fstest.MapFS{
		"00001_init.sql": {Data: []byte("-- +goose Up\nCREATE TABLE a (id INTEGER PRIMARY KEY);\n")},
		"00002_bad.sql":  {Data: []byte("-- +goose Up\nCREATE TABLE a (id INTEGER PRIMARY KEY);\n")},
	}}
	if err := database.MigrateSQLite(ctx, db, m); err == nil {
		t.Fatal("MigrateSQLite with a failing migration = nil, want an error")
	}
	got, err := database.StatusSQLite(ctx, db, m)
	if err != nil {
		t.Fatalf("StatusSQLite: %v", err)
	}
	want := []database.MigrationStatus{{Version: 1, Name: "00001_init.sql", Applied: true}, {Version: 2, Name: "00002_bad.sql"}}
	if diff := cmp.Diff(want, got, ignoreAppliedAt); diff != "" {
		t.Errorf("status after a failed migration (-want +got):\n%s", diff)
	}
}

func postgresTableExists(ctx context.Context, t *testing.T, pool *pgxpool.Pool, name string) bool {
	t.Helper()
	var exists bool
	if err := pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", name).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	return exists
}

func TestMigratePostgres(t *testing.T) {
	ctx := testContext(t)
	// No schema in the search_path: the migrations must find theirs on their own, and must not
	// change this pool's connections.
	pool := databasetest.Postgres(t, "")
	// "identity" is a keyword in PostgreSQL (non-reserved), the harshest of the real service names.
	m := postgresMigrations("identity")

	got, err := database.StatusPostgres(ctx, pool, m)
	if err != nil {
		t.Fatalf("StatusPostgres before: %v", err)
	}
	if diff := cmp.Diff(wantPending, got); diff != "" {
		t.Errorf("status before migrating (-want +got):\n%s", diff)
	}

	for i := range 2 {
		if err := database.MigratePostgres(ctx, pool, m); err != nil {
			t.Fatalf("MigratePostgres #%d: %v", i+1, err)
		}
	}
	for _, table := range []string{"identity.things", "identity.others", "identity.goose_db_version"} {
		if !postgresTableExists(ctx, t, pool, table) {
			t.Errorf("table %s missing after migrating", table)
		}
	}
	for _, table := range []string{"public.things", "public.goose_db_version"} {
		if postgresTableExists(ctx, t, pool, table) {
			t.Errorf("table %s exists; migrations must stay in the service schema", table)
		}
	}
	var seeds int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM identity.things").Scan(&seeds); err != nil || seeds != 1 {
		t.Errorf("rows in identity.things = %d, %v, want 1, nil", seeds, err)
	}
	var schemas []string
	if err := pool.QueryRow(ctx, "SELECT current_schemas(false)").Scan(&schemas); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"public"}, schemas); diff != "" {
		t.Errorf("caller's pool search_path changed by MigratePostgres (-want +got):\n%s", diff)
	}

	got, err = database.StatusPostgres(ctx, pool, m)
	if err != nil {
		t.Fatalf("StatusPostgres after: %v", err)
	}
	if diff := cmp.Diff(wantApplied, got, ignoreAppliedAt); diff != "" {
		t.Errorf("status after migrating (-want +got):\n%s", diff)
	}

	// A second service in the same database has its own history and tables.
	if err := database.MigratePostgres(ctx, pool, postgresMigrations("courier")); err != nil {
		t.Fatalf("MigratePostgres courier: %v", err)
	}
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM courier.things").Scan(&seeds); err != nil || seeds != 1 {
		t.Errorf("rows in courier.things = %d, %v, want 1, nil", seeds, err)
	}
}

func TestMigratePostgresConcurrent(t *testing.T) {
	ctx := testContext(t)
	u := databasetest.PostgresURL(t)
	const n = 4
	setup, err := database.OpenPostgres(ctx, u, database.PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer setup.Close()
	first := postgresMigrations("dispatch")
	first.FS = onlyFirst(first.FS)
	if err := database.MigratePostgres(ctx, setup, first); err != nil {
		t.Fatalf("MigratePostgres 00001: %v", err)
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			// A pool each, like separate processes starting at once.
			pool, err := database.OpenPostgres(ctx, u, database.PostgresOptions{Schema: "dispatch"})
			if err != nil {
				errs[i] = err
				return
			}
			defer pool.Close()
			errs[i] = database.MigratePostgres(ctx, pool, postgresMigrations("dispatch"))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("MigratePostgres #%d: %v", i+1, err)
		}
	}
	var seeds int
	if err := setup.QueryRow(ctx, "SELECT count(*) FROM dispatch.things").Scan(&seeds); err != nil || seeds != 1 {
		t.Errorf("rows in dispatch.things = %d, %v, want 1, nil (the seed migration ran once)", seeds, err)
	}
}
