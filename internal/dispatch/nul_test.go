package dispatch_test

import (
	"testing"

	"github.com/google/uuid"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/dispatchtest"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/apperrtest"
)

// TestTextWithNULIsInvalid: a NUL in free text is Invalid, naming the field, on every store. PostgreSQL
// cannot store it; SQLite could, but a request must get the same answer whichever database is behind.
func TestTextWithNULIsInvalid(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true})
	req := dispatchtest.Request("nul-1", dispatchtest.Berlin, "")
	req.Notes = "ring\x00twice"
	_, err := sys.Service.CreateTask(dispatchtest.Customer(uuid.NewString()), req)
	apperrtest.WantViolations(t, "CreateTask with a NUL in notes", err, []string{"notes"})

	tk, c := assigned(t, sys)
	r := sys.Service.Execute(c.Ctx, c.ID, "rel-1", dispatch.Command{Release: &dispatch.ReleaseCmd{TaskID: tk.ID, Reason: dispatch.ReleaseOther, Comment: "flat\x00tyre"}})
	if want := "release.comment must not contain NUL characters"; r.Err == nil || r.Err.Code != apperr.Invalid || r.Err.Message != want {
		t.Errorf("release with a NUL in its comment = %+v, want Invalid %q", r.Err, want)
	}
	_, err = sys.Service.OpenSession(c.Ctx, dispatch.Hello{AppVersion: "2.0\x00"})
	apperrtest.WantViolations(t, "OpenSession with a NUL in app_version", err, []string{"hello.app_version"})
}
