package dispatch_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/dispatchtest"
	"lastmile/internal/platform/apperr"
)

// bidiRefused is the description of a text holding a bidirectional control.
const bidiRefused = "must not contain bidirectional control characters (U+202A to U+202E, U+2066 to U+2069)"

// wantBidiRefused fails unless err is Invalid with one violation, of field, for its bidirectional
// controls, and a message naming the field.
func wantBidiRefused(t *testing.T, call string, err error, field string) {
	t.Helper()
	e := apperr.As(err)
	if e == nil || e.Code != apperr.Invalid {
		t.Errorf("%s = %v, want Invalid", call, err)
		return
	}
	if diff := cmp.Diff([]apperr.FieldViolation{{Field: field, Description: bidiRefused}}, e.Violations); diff != "" {
		t.Errorf("%s violations (-want +got):\n%s", call, diff)
	}
	if want := field + " " + bidiRefused; e.Message != want {
		t.Errorf("%s message = %q, want %q", call, e.Message, want)
	}
}

// TestTextWithBidiControlIsInvalid: the bidirectional embedding, override and isolate controls, which
// make text display as other than it is (an address reversed on the courier's screen), are refused in
// every free text a task, a command, a session or an upload carries, naming the field. The direction
// marks LRM and RLM, which Arabic and Hebrew text needs, are kept as sent.
func TestTextWithBidiControlIsInvalid(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true})
	for _, tc := range []struct {
		field string
		spoil func(*dispatch.CreateRequest)
	}{
		{"pickup.address", func(r *dispatch.CreateRequest) { r.Pickup.Address = "Main St 1 \u202e9 tinU" }},
		{"dropoff.address", func(r *dispatch.CreateRequest) { r.Dropoff.Address = "\u202aOranienstr 2\u202c" }},
		{"dropoff.instructions", func(r *dispatch.CreateRequest) { r.Dropoff.Instructions = "gate \u20671234\u2069" }},
		{"dropoff.instructions", func(r *dispatch.CreateRequest) { r.Dropoff.Instructions = "line one\n\u2069line two" }},
		{"pickup.instructions", func(r *dispatch.CreateRequest) { r.Pickup.Instructions = "\u2068back door" }},
		{"dropoff.contact.name", func(r *dispatch.CreateRequest) { r.Dropoff.Contact.Name = "\u202bAda" }},
		{"pickup.contact.name", func(r *dispatch.CreateRequest) { r.Pickup.Contact.Name = "Ada\u2066" }},
		{"notes", func(r *dispatch.CreateRequest) { r.Notes = "fragile \u202d!\u202c" }},
	} {
		req := dispatchtest.Request("bidi-"+uuid.NewString(), dispatchtest.Berlin, "")
		tc.spoil(&req)
		_, err := sys.Service.CreateTask(dispatchtest.Customer(uuid.NewString()), req)
		wantBidiRefused(t, "CreateTask with a bidirectional control in "+tc.field, err, tc.field)
	}

	req := dispatchtest.Request("marks-1", dispatchtest.Berlin, "")
	req.Dropoff.Address = "شارع الملك فهد\u200f 12"
	req.Dropoff.Contact.Name = "\u200fעדה"
	req.Notes = "\u200eABC\u200f"
	tk, err := sys.Service.CreateTask(dispatchtest.Customer(uuid.NewString()), req)
	if err != nil {
		t.Fatalf("CreateTask with LRM and RLM = %v, want it created", err)
	}
	if tk.Dropoff.Address != req.Dropoff.Address || tk.Dropoff.Contact.Name != req.Dropoff.Contact.Name || tk.Notes != req.Notes {
		t.Errorf("task with direction marks = %q, %q, %q; want them as sent", tk.Dropoff.Address, tk.Dropoff.Contact.Name, tk.Notes)
	}

	tk, c := assigned(t, sys)
	r := sys.Service.Execute(c.Ctx, c.ID, "rel-1", dispatch.Command{Release: &dispatch.ReleaseCmd{TaskID: tk.ID, Reason: dispatch.ReleaseOther, Comment: "flat \u202etyre"}})
	if want := "release.comment " + bidiRefused; r.Err == nil || r.Err.Code != apperr.Invalid || r.Err.Message != want {
		t.Errorf("release with a bidirectional control in its comment = %+v, want Invalid %q", r.Err, want)
	}
	_, err = sys.Service.OpenSession(c.Ctx, dispatch.Hello{AppVersion: "2.0\u2066"})
	wantBidiRefused(t, "OpenSession with a bidirectional control in app_version", err, "hello.app_version")
	_, _, err = sys.Service.StartUpload(c.Ctx, dispatch.UploadStartReq{TaskID: tk.ID, Kind: dispatch.ProofSignature, ContentType: "image/png",
		SizeBytes: 100, SHA256: strings.Repeat("ab", 32), SignerName: "\u202eAda"})
	wantBidiRefused(t, "StartUpload with a bidirectional control in signer_name", err, "signer_name")
	_, err = sys.Service.CancelTask(dispatchtest.Dispatcher(), dispatch.CancelRequest{ID: tk.ID, Reason: dispatch.CancelOther, Comment: "\u202bduplicate"})
	wantBidiRefused(t, "CancelTask with a bidirectional control in its comment", err, "comment")
}
