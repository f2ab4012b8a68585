package jobs_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/riverqueue/river"

	"lastmile/internal/platform/database"
	"lastmile/internal/platform/jobs"
)

// notifyArgs is a job: tell a peer service about a task. Its Kind names it in the queue.
type notifyArgs struct {
	TaskID string `json:"task_id"`
}

func (notifyArgs) Kind() string { return "notify_courier" }

// notifyWorker does the job. It must be idempotent: a job may run more than once.
type notifyWorker struct {
	river.WorkerDefaults[notifyArgs]
	done chan string
}

func (w *notifyWorker) Work(ctx context.Context, job *river.Job[notifyArgs]) error {
	// ... call the peer; an error retries with backoff ...
	w.done <- job.Args.TaskID
	return nil
}

// A store enqueues a job in the transaction of its change; River works it once the change commits.
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
	if err := jobs.Migrate(ctx, db, database.SQLite, ""); err != nil {
		log.Fatal(err)
	}

	worker := &notifyWorker{done: make(chan string, 1)}
	workers := river.NewWorkers()
	river.AddWorker(workers, worker)
	queue, err := jobs.New(db, database.SQLite, jobs.Options{Workers: workers})
	if err != nil {
		log.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- queue.Run(runCtx) }()
	defer func() { stop(); <-done }()

	err = database.InTx(ctx, db, func(tx *sql.Tx) error {
		// ... UPDATE tasks SET status = 'ASSIGNED' WHERE id = 't1' ...
		_, err := queue.EnqueueTx(ctx, tx, notifyArgs{TaskID: "t1"}, nil)
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("notified about", <-worker.done)
	// Output:
	// notified about t1
}
