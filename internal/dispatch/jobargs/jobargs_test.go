package jobargs_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/jobargs"
	"lastmile/internal/platform/apperr"
)

func TestFor(t *testing.T) {
	release := time.Date(2031, 1, 2, 3, 4, 5, 6, time.FixedZone("X", 3600))
	tests := []struct {
		job  dispatch.Job
		want river.JobArgs
		kind string
	}{
		{dispatch.Job{Kind: dispatch.JobClaim, CourierID: "c1", TaskID: "t1", ExpectedRelease: release},
			jobargs.ClaimArgs{CourierID: "c1", TaskID: "t1", ExpectedRelease: release.UTC()}, "dispatch.claim"},
		{dispatch.Job{Kind: dispatch.JobRelease, CourierID: "c1", TaskID: "t1", ExpectedRelease: release},
			jobargs.ReleaseArgs{CourierID: "c1", TaskID: "t1"}, "dispatch.release"},
		{dispatch.Job{Kind: dispatch.JobRelease, CourierID: "c1", TaskID: "t1", Final: true},
			jobargs.ReleaseArgs{CourierID: "c1", TaskID: "t1", Final: true}, "dispatch.release"},
	}
	for _, tt := range tests {
		got, ok := jobargs.For(tt.job)
		if !ok || !cmp.Equal(tt.want, got) {
			t.Errorf("For(%+v) = %+v, %v, want %+v, true", tt.job, got, ok, tt.want)
			continue
		}
		if got.Kind() != tt.kind {
			t.Errorf("For(%+v).Kind() = %q, want %q", tt.job, got.Kind(), tt.kind)
		}
		opts, ok := got.(river.JobArgsWithInsertOpts)
		if !ok || opts.InsertOpts().MaxAttempts != jobargs.MaxAttempts {
			t.Errorf("For(%+v) insert options: MaxAttempts %v, want %d", tt.job, opts, jobargs.MaxAttempts)
		}
	}
	if got, ok := jobargs.For(dispatch.Job{Kind: "teleport"}); ok || got != nil {
		t.Errorf("For(unknown kind) = %v, %v, want nil, false", got, ok)
	}
}

// TestReleaseArgsJSON checks the stored form of a release: final only when set, so that a release
// enqueued before the field existed reads as not final (its job reads the task, which is always sound).
func TestReleaseArgsJSON(t *testing.T) {
	for _, tt := range []struct {
		args jobargs.ReleaseArgs
		want string
	}{
		{jobargs.ReleaseArgs{CourierID: "c1", TaskID: "t1"}, `{"courier_id":"c1","task_id":"t1"}`},
		{jobargs.ReleaseArgs{CourierID: "c1", TaskID: "t1", Final: true}, `{"courier_id":"c1","task_id":"t1","final":true}`},
	} {
		b, err := json.Marshal(tt.args)
		if err != nil || string(b) != tt.want {
			t.Errorf("json.Marshal(%+v) = %s, %v, want %s", tt.args, b, err, tt.want)
		}
		var back jobargs.ReleaseArgs
		if err := json.Unmarshal(b, &back); err != nil || back != tt.args {
			t.Errorf("json.Unmarshal(%s) = %+v, %v, want %+v", b, back, err, tt.args)
		}
	}
}

// TestRetryDelay: 1 s doubling to the one-minute cap, less up to a fifth by the jitter.
func TestRetryDelay(t *testing.T) {
	for _, tt := range []struct {
		n      int
		jitter float64
		want   time.Duration
	}{
		{0, 0, time.Second}, {1, 0, time.Second}, {2, 0, 2 * time.Second}, {3, 0, 4 * time.Second}, {4, 0, 8 * time.Second},
		{5, 0, 16 * time.Second}, {6, 0, 32 * time.Second}, {7, 0, time.Minute}, {8, 0, time.Minute}, {1000, 0, time.Minute},
		{1 << 40, 0, time.Minute}, {1, 0.5, 900 * time.Millisecond}, {6, 0.25, 30400 * time.Millisecond}, {7, 0.5, 54 * time.Second},
		{100, 0.999, 48012 * time.Millisecond},
	} {
		if got := jobargs.RetryDelay(tt.n, tt.jitter); got != tt.want {
			t.Errorf("RetryDelay(%d, %g) = %v, want %v", tt.n, tt.jitter, got, tt.want)
		}
	}
}

// TestRetryPolicyNextRetry: River's policy for failures that spend an attempt retries the n-th after
// RetryDelay(n), however many there were (River's default would wait n^4 seconds).
func TestRetryPolicyNextRetry(t *testing.T) {
	now := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	p := jobargs.RetryPolicy{Now: func() time.Time { return now }, Rand: func() float64 { return 0.5 }}
	for errs, want := range map[int]time.Duration{0: 900 * time.Millisecond, 1: 1800 * time.Millisecond, 5: 28800 * time.Millisecond, 6: 54 * time.Second, 60: 54 * time.Second} {
		job := &rivertype.JobRow{Errors: make([]rivertype.AttemptError, errs)}
		if got := p.NextRetry(job); !got.Equal(now.Add(want)) {
			t.Errorf("NextRetry after %d errors = %v, want %v", errs, got.Sub(now), want)
		}
	}
}

// TestRetrySnoozes: a failed job is snoozed (no attempt spent, no error stored) for RetryDelay of its
// snoozes so far plus one, capped at a minute however many; a success, and a failure while River stops,
// pass unchanged.
func TestRetrySnoozes(t *testing.T) {
	p := jobargs.RetryPolicy{Rand: func() float64 { return 0 }}
	job := dispatch.Job{Kind: dispatch.JobClaim, CourierID: "c1", TaskID: "t1"}
	down := apperr.Errorf(apperr.Unavailable, "courier service unavailable")
	for meta, want := range map[string]time.Duration{
		`{}`: time.Second, `{"snoozes":1}`: 2 * time.Second, `{"snoozes":5}`: 32 * time.Second, `{"snoozes":6}`: time.Minute,
		`{"snoozes":900,"other":true}`: time.Minute, `not json`: time.Second, ``: time.Second,
	} {
		err := p.Retry(context.Background(), nil, job, []byte(meta), down)
		var snooze *river.JobSnoozeError
		if !errors.As(err, &snooze) || snooze.Duration != want {
			t.Errorf("Retry(metadata %s, courier down) = %v, want a snooze of %v", meta, err, want)
		}
	}
	if err := p.Retry(context.Background(), nil, job, []byte(`{}`), nil); err != nil {
		t.Errorf("Retry(success) = %v, want nil", err)
	}
	stopping, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Retry(stopping, nil, job, []byte(`{}`), down); err != down {
		t.Errorf("Retry(while River stops) = %v, want the failure itself", err)
	}
}
