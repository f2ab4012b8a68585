package jobargs_test

import (
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
