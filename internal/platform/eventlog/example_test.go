package eventlog_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"lastmile/internal/platform/database"
	"lastmile/internal/platform/eventlog"
	"lastmile/internal/platform/eventlog/sqllog"
)

// A store appends an event in the transaction of the change it describes; every replica's Log tails
// the log and hands the event to the subscribers of that replica (in a service: its watch streams).
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
	// After the service's own migrations.
	if err := database.MigrateSQLite(ctx, db, sqllog.Migrations(database.SQLite, "dispatch")); err != nil {
		log.Fatal(err)
	}

	// Wiring: one Log per service and process, running as long as the process serves.
	feed, err := eventlog.New(sqllog.NewSource(db, database.SQLite), eventlog.Options{})
	if err != nil {
		log.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- feed.Run(runCtx) }()
	defer func() { stop(); <-done }()

	// A watch handler: subscribe from the client's cursor (here: only what commits from now on).
	sub, err := feed.Subscribe(ctx, eventlog.FromHead)
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()

	// A store: the change and its event commit together; then wake this replica's tailer.
	err = database.InTx(ctx, db, func(tx *sql.Tx) error {
		// ... UPDATE tasks SET status = 'ASSIGNED' WHERE id = 't1' ...
		_, err := sqllog.Append(ctx, tx, database.SQLite, eventlog.Event{Topic: "dispatch.task.assigned", Key: "t1"})
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
	feed.Nudge()

	e, err := sub.Next(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(e.Seq, e.Topic, e.Key)
	// Output:
	// 1 dispatch.task.assigned t1
}
