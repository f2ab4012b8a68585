package database_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sync"
	"testing/fstest"
	"time"

	"lastmile/internal/platform/database"
)

// A store opens its database, applies its embedded migrations, and runs one SQL text, with $n
// placeholders and times through Dialect.Time and ScanTime, on either engine.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "lastmile-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	db, err := database.OpenSQLite(ctx, filepath.Join(dir, "dispatch.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	d := database.SQLite // database.Postgres for a *sql.DB from database.SQLDB(pool)

	// In a service this is an embed.FS of its migrations directory (EmbeddedMigrations).
	migrations := fstest.MapFS{"00001_init.sql": {Data: []byte("-- +goose Up\n" +
		"CREATE TABLE tasks (id TEXT PRIMARY KEY, status TEXT NOT NULL, created_at INTEGER NOT NULL);\n")}}
	if err := database.MigrateSQLite(ctx, db, database.Migrations{Service: "dispatch", FS: migrations}); err != nil {
		log.Fatal(err)
	}

	created := time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC)
	err = database.InTx(ctx, db, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO tasks (id, status, created_at) VALUES ($1, $2, $3)", "t1", "PENDING", d.Time(created))
		return err
	})
	if err != nil {
		log.Fatal(err)
	}

	var status string
	var at time.Time
	if err := db.QueryRowContext(ctx, "SELECT status, created_at FROM tasks WHERE id = $1", "t1").Scan(&status, database.ScanTime(&at)); err != nil {
		log.Fatal(err)
	}
	fmt.Println(status, at.Format(time.RFC3339))
	// Output:
	// PENDING 2026-03-01T09:30:00Z
}

// Concurrent writers on SQLite share transactions through a Group: each function runs in its own
// savepoint of one transaction, a failing one is rolled back alone, and one COMMIT serves them all.
func ExampleGroup() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "lastmile-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db, err := database.OpenSQLite(ctx, filepath.Join(dir, "group.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "CREATE TABLE acks (courier TEXT PRIMARY KEY, cursor INTEGER NOT NULL)"); err != nil {
		log.Fatal(err)
	}

	g := database.NewGroup(db, 0)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i, courier := range []string{"c1", "c2", "c1"} { // the second c1 breaks the primary key
		wg.Go(func() {
			errs[i] = g.InTx(ctx, func(tx *sql.Tx) error {
				_, err := tx.ExecContext(ctx, "INSERT INTO acks (courier, cursor) VALUES ($1, $2)", courier, i+1)
				return err
			})
		})
	}
	wg.Wait()
	failed := 0
	for _, err := range errs {
		if err != nil {
			failed++
		}
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM acks").Scan(&n); err != nil {
		log.Fatal(err)
	}
	fmt.Println("failed:", failed, "rows:", n)
	// Output:
	// failed: 1 rows: 2
}
