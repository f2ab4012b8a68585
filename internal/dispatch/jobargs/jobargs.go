// Package jobargs defines the River job arguments of dispatch's durable jobs (dispatch.Job): the store
// enqueues them in the transaction of the change that needs them (sqlstore.RiverJobs), and the workers
// that call the courier service (registered by the cli wiring) take them. Both sides import this
// package, so a job's kind and fields are written once.
//
// The jobs must happen eventually, whatever the courier service's outages: InsertOpts gives them
// MaxAttempts attempts, which with River's backoff (attempt^4 seconds) is retrying for years, not a
// bound anyone reaches. Workers must be idempotent (the courier service's Claim and Release are).
package jobargs

import (
	"context"

	"time"

	"github.com/riverqueue/river"

	"lastmile/internal/dispatch"
)

// MaxAttempts is how often a dispatch job runs before River gives up on it: in effect never.
const MaxAttempts = 1000

// DefaultWorkers is how many of dispatch's jobs one replica runs at once. Each is a call to the courier
// service that mostly waits (on the network, on courier's database), so the bound is on calls in
// flight, not on cores: at River's usual 10 a replica finished about 95 claims a second while it
// accepted 500 offers a second (the dispatch load test), and the claims fell further behind for as long
// as the load lasted.
const DefaultWorkers = 100

// MaxWorkers bounds --dispatch-job-workers.
const MaxWorkers = 10000

// Queues is the job client's queue configuration (jobs.Options.Queues) for workers jobs at once.
func Queues(workers int) map[string]int { return map[string]int{river.QueueDefault: workers} }

// The job kinds, as River names them.
const (
	KindClaim   = "dispatch.claim"
	KindRelease = "dispatch.release"
)

// ClaimArgs reserves capacity on a courier for a task (dispatch.JobClaim).
type ClaimArgs struct {
	CourierID       string    `json:"courier_id"`
	TaskID          string    `json:"task_id"`
	ExpectedRelease time.Time `json:"expected_release"`
	// PreviousCourierID is released first (a reassignment).
	PreviousCourierID string `json:"previous_courier_id,omitempty"`
}

// Kind implements river.JobArgs.
func (ClaimArgs) Kind() string { return KindClaim }

// InsertOpts implements river.JobArgsWithInsertOpts.
func (ClaimArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{MaxAttempts: MaxAttempts} }

// ReleaseArgs frees the capacity a task holds on a courier (dispatch.JobRelease).
type ReleaseArgs struct {
	CourierID string `json:"courier_id"`
	TaskID    string `json:"task_id"`
	// Final says that the task was final when the release was enqueued (dispatch.Job.Final). Jobs
	// enqueued before the field existed lack it: their release reads the task, which is always sound.
	Final bool `json:"final,omitempty"`
}

// Kind implements river.JobArgs.
func (ReleaseArgs) Kind() string { return KindRelease }

// InsertOpts implements river.JobArgsWithInsertOpts.
func (ReleaseArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{MaxAttempts: MaxAttempts} }

// For returns the River job arguments of j. ok is false for a kind this package does not know.
func For(j dispatch.Job) (args river.JobArgs, ok bool) {
	switch j.Kind {
	case dispatch.JobClaim:
		return ClaimArgs{CourierID: j.CourierID, TaskID: j.TaskID, ExpectedRelease: j.ExpectedRelease.UTC(), PreviousCourierID: j.Previous}, true
	case dispatch.JobRelease:
		return ReleaseArgs{CourierID: j.CourierID, TaskID: j.TaskID, Final: j.Final}, true
	}
	return nil, false
}

// Workers returns River workers for both kinds that hand each job to run (dispatch.Service.RunJob), which
// must be idempotent: River runs a job again when its completion was not recorded.
func Workers(run func(context.Context, dispatch.Job) error) *river.Workers {
	w := river.NewWorkers()
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, j *river.Job[ClaimArgs]) error {
		return run(ctx, dispatch.Job{Kind: dispatch.JobClaim, CourierID: j.Args.CourierID, TaskID: j.Args.TaskID, ExpectedRelease: j.Args.ExpectedRelease, Previous: j.Args.PreviousCourierID})
	}))
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, j *river.Job[ReleaseArgs]) error {
		return run(ctx, dispatch.Job{Kind: dispatch.JobRelease, CourierID: j.Args.CourierID, TaskID: j.Args.TaskID, Final: j.Args.Final})
	}))
	return w
}
