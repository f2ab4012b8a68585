package apperrtest_test

import (
	"errors"
	"fmt"
	"testing"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/apperrtest"
)

// recorder is a testing.TB that records failures instead of failing.
type recorder struct {
	testing.TB
	failed, fatal bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Errorf(string, ...any) { r.failed = true }
func (r *recorder) Fatalf(string, ...any) { r.failed, r.fatal = true, true }

func TestWantCode(t *testing.T) {
	for _, tt := range []struct {
		err      error
		want     apperr.Code
		wantFail bool
	}{
		{nil, "", false},
		{apperr.Errorf(apperr.NotFound, "x"), apperr.NotFound, false},
		{fmt.Errorf("wrapped: %w", apperr.Errorf(apperr.NotFound, "x")), apperr.NotFound, false},
		{apperr.Errorf(apperr.Conflict, "x"), apperr.NotFound, true},
		{nil, apperr.NotFound, true},
	} {
		r := &recorder{TB: t}
		apperrtest.WantCode(r, "call", tt.err, tt.want)
		if r.failed != tt.wantFail {
			t.Errorf("WantCode(%v, %q) failed = %v, want %v", tt.err, tt.want, r.failed, tt.wantFail)
		}
	}
}

func TestWantViolations(t *testing.T) {
	invalid := apperr.InvalidFields("bad", apperr.FieldViolation{Field: "a"}, apperr.FieldViolation{Field: "b"})
	for _, tt := range []struct {
		name     string
		err      error
		fields   []string
		wantFail bool
	}{
		{"nil, none wanted", nil, nil, false},
		{"same fields", invalid, []string{"a", "b"}, false},
		{"other order", invalid, []string{"b", "a"}, true},
		{"error, none wanted", invalid, nil, true},
		{"not Invalid", apperr.Errorf(apperr.NotFound, "x"), []string{"a"}, true},
		{"not an apperr", errors.New("x"), []string{"a"}, true},
	} {
		r := &recorder{TB: t}
		apperrtest.WantViolations(r, "call", tt.err, tt.fields)
		if r.failed != tt.wantFail {
			t.Errorf("%s: failed = %v, want %v", tt.name, r.failed, tt.wantFail)
		}
	}
}
