package dispatch_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/dispatchtest"
	"lastmile/internal/dispatch/jobargs"
	"lastmile/internal/geo"
)

// claimJobs returns the River rows of the system's claim jobs.
func claimJobs(t *testing.T, sys *dispatchtest.System) []*rivertype.JobRow {
	t.Helper()
	res, err := sys.Jobs.River().JobList(context.Background(), river.NewJobListParams().Kinds(jobargs.KindClaim))
	if err != nil {
		t.Fatalf("JobList: %v", err)
	}
	return res.Jobs
}

// snoozes returns how often River snoozed job.
func snoozes(t *testing.T, job *rivertype.JobRow) int {
	t.Helper()
	var m struct {
		Snoozes int `json:"snoozes"`
	}
	if err := json.Unmarshal(job.Metadata, &m); err != nil {
		t.Fatalf("job %d metadata %s: %v", job.ID, job.Metadata, err)
	}
	return m.Snoozes
}

// TestClaimJobRetriesWhileCourierIsDownWithoutSpendingAttempts: a claim that fails because the courier
// service is unavailable is snoozed, not failed: no attempt spent, no error stored in the job's row, so
// that an outage of any length neither discards the job nor grows its row; it runs again after
// jobargs.RetryDelay and lands once courier is back. After a long outage (here: a job snoozed 40 times
// already) the wait is the cap, one minute, where River's own backoff would wait 41^4 s (about 33 days).
func TestClaimJobRetriesWhileCourierIsDownWithoutSpendingAttempts(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true})
	a := sys.AddCourier(t, dispatchtest.Berlin, geo.Bicycle, false)
	tk := create(t, sys, nil)
	// The courier service is down for the first claim only.
	var once sync.Once
	sys.Couriers.OnClaim(func() { once.Do(func() { sys.Couriers.SetDown(true) }) })
	sys.Couriers.OnClaimed(func(string, string, error) { sys.Couriers.SetDown(false) })
	if _, err := sys.Service.AssignTask(dispatchtest.Dispatcher(), dispatch.AssignRequest{ID: tk.ID, CourierID: a.ID}); err != nil {
		t.Fatalf("AssignTask: %v", err)
	}
	waitFor(t, "the claim after courier came back", func() bool { return sys.Couriers.Claims()[tk.ID] == a.ID })
	var job *rivertype.JobRow
	waitFor(t, "the claim job completed", func() bool {
		jobs := claimJobs(t, sys)
		if len(jobs) != 1 {
			t.Fatalf("%d claim jobs, want 1", len(jobs))
		}
		job = jobs[0]
		return job.State == rivertype.JobStateCompleted
	})
	if job.Attempt != 1 || len(job.Errors) != 0 || snoozes(t, job) != 1 {
		t.Errorf("completed claim job: attempt %d, errors %v, snoozes %d; want 1 attempt (the failed run gave its attempt back), no error, 1 snooze",
			job.Attempt, job.Errors, snoozes(t, job))
	}
	if calls := sys.Couriers.Calls("Claim"); calls != 2 {
		t.Errorf("Claim called %d times, want 2 (down, then the retry)", calls)
	}

	sys.Couriers.OnClaim(nil)
	sys.Couriers.OnClaimed(nil)
	sys.Couriers.SetDown(true)
	res, err := sys.Jobs.River().Insert(context.Background(), jobargs.ClaimArgs{CourierID: a.ID, TaskID: tk.ID},
		&river.InsertOpts{Metadata: []byte(`{"snoozes":40}`)})
	if err != nil {
		t.Fatalf("insert a claim job snoozed 40 times: %v", err)
	}
	waitFor(t, "the long-outage claim job ran", func() bool {
		job, err = sys.Jobs.River().JobGet(context.Background(), res.Job.ID)
		if err != nil {
			t.Fatalf("JobGet: %v", err)
		}
		return job.AttemptedAt != nil && job.State != rivertype.JobStateRunning
	})
	if job.State != rivertype.JobStateScheduled || job.Attempt != 0 || len(job.Errors) != 0 || snoozes(t, job) != 41 {
		t.Fatalf("claim job after a failure in a long outage: state %s, attempt %d, errors %v, snoozes %d; want scheduled, 0, none, 41",
			job.State, job.Attempt, job.Errors, snoozes(t, job))
	}
	// Snoozed for exactly jobargs.MaxRetryDelay (the system's jitter is 0) from the moment the run
	// failed, which lies between its start and the job timeout (River's default, one minute).
	if wait := job.ScheduledAt.Sub(*job.AttemptedAt); wait < jobargs.MaxRetryDelay || wait > jobargs.MaxRetryDelay+time.Minute {
		t.Errorf("claim job scheduled %v after its attempt, want %v after its failure", wait, jobargs.MaxRetryDelay)
	}
}
