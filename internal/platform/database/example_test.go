package database_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"testing/fstest"

	"lastmile/internal/platform/database"
)

// A state change and its outbox event commit together; the relay then hands the event to a
// publisher (in a service: the watchers and the calls to peers).
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

	// In a service this is an embed.FS of its migrations directory.
	migrations := fstest.MapFS{"00001_init.sql": {Data: []byte("-- +goose Up\n" +
		"CREATE TABLE tasks (id TEXT PRIMARY KEY, status TEXT NOT NULL);\n" +
		database.OutboxSchemaSQLite)}}
	if err := database.MigrateSQLite(ctx, db, database.Migrations{Service: "dispatch", FS: migrations}); err != nil {
		log.Fatal(err)
	}

	err = database.InTx(ctx, db, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "INSERT INTO tasks (id, status) VALUES ('t1', 'PENDING')"); err != nil {
			return err
		}
		_, err := database.AppendSQLite(ctx, tx, database.Event{Topic: "dispatch.task.created", Key: "t1"})
		return err
	})
	if err != nil {
		log.Fatal(err)
	}

	ctx, stop := context.WithCancel(ctx)
	relay := database.NewRelay(database.NewSQLiteOutbox(db), func(_ context.Context, events []database.Event) error {
		for _, e := range events {
			fmt.Println(e.ID, e.Topic, e.Key)
		}
		stop() // one batch is enough for the example
		return nil
	}, database.RelayOptions{})
	if err := relay.Run(ctx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// 1 dispatch.task.created t1
}
