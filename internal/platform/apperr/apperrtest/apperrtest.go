// Package apperrtest holds the assertions on domain errors (package apperr) that the tests of every
// service make: an error's code, and the fields an Invalid error names.
package apperrtest

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"lastmile/internal/platform/apperr"
)

// WantCode fails the test unless err has the domain code want ("" for a nil error). call names the call
// that returned err in the message.
func WantCode(t testing.TB, call string, err error, want apperr.Code) {
	t.Helper()
	if got := apperr.CodeOf(err); got != want {
		t.Errorf("%s = %v (code %q), want code %q", call, err, got, want)
	}
}

// WantViolations fails the test unless err is an Invalid *apperr.Error naming exactly fields, in order,
// or, when fields is empty, err is nil.
func WantViolations(t testing.TB, call string, err error, fields []string) {
	t.Helper()
	if len(fields) == 0 {
		if err != nil {
			t.Errorf("%s = %v, want nil", call, err)
		}
		return
	}
	e := apperr.As(err)
	if e == nil || e.Code != apperr.Invalid {
		t.Fatalf("%s = %v (code %q), want an Invalid *apperr.Error", call, err, apperr.CodeOf(err))
		return // for a testing.TB whose Fatalf returns
	}
	var got []string
	for _, v := range e.Violations {
		got = append(got, v.Field)
	}
	if diff := cmp.Diff(fields, got); diff != "" {
		t.Errorf("%s violated fields (-want +got):\n%s", call, diff)
	}
}
