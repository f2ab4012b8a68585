package jobargs_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/riverqueue/river"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/jobargs"
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
