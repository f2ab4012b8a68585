package dispatch_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/dispatchtest"
	"lastmile/internal/platform/apperr"
)

func TestCourierCommandsThroughDelivery(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true})
	tk, c := assigned(t, sys)
	exec := func(id string, cmd dispatch.Command) dispatch.CommandResult {
		return sys.Service.Execute(c.Ctx, c.ID, id, cmd)
	}
	if r := exec("x1", dispatch.Command{Deliver: &dispatch.DeliverCmd{TaskID: tk.ID}}); r.Err == nil || r.Err.Code != apperr.FailedPrecondition || r.Err.Reason != dispatch.ReasonTaskState {
		t.Fatalf("deliver before pickup = %+v", r)
	}
	r := exec("p1", dispatch.Command{Pickup: &dispatch.PickupCmd{TaskID: tk.ID}})
	if r.Err != nil || r.Task.State != dispatch.StatePickedUp {
		t.Fatalf("pickup = %+v", r)
	}
	// Already applied, resent under a new id: succeeds again.
	picked := r.Task.Version
	if r := exec("p2", dispatch.Command{Pickup: &dispatch.PickupCmd{TaskID: tk.ID}}); r.Err != nil || r.Task.Version != picked {
		t.Fatalf("second pickup = %+v, want success without a change (version %d)", r, picked)
	}
	if r := exec("r1", dispatch.Command{Release: &dispatch.ReleaseCmd{TaskID: tk.ID, Reason: dispatch.ReleaseOther}}); r.Err == nil || r.Err.Reason != dispatch.ReasonTaskState {
		t.Fatalf("release after pickup = %+v", r)
	}
	r = exec("d1", dispatch.Command{Deliver: &dispatch.DeliverCmd{TaskID: tk.ID}})
	if r.Err != nil || r.Task.State != dispatch.StateDelivered || r.Task.DeliverTime.IsZero() || r.Task.FinishTime.IsZero() {
		t.Fatalf("deliver = %+v", r)
	}
	waitFor(t, "the release", func() bool { return sys.Couriers.Calls("Release") > 0 && sys.Couriers.Claims()[tk.ID] == "" })
	stranger := sys.AddCourier(t, dispatchtest.Berlin, "car", true)
	if r := sys.Service.Execute(stranger.Ctx, stranger.ID, "s1", dispatch.Command{Pickup: &dispatch.PickupCmd{TaskID: tk.ID}}); r.Err == nil || r.Err.Code != apperr.NotFound {
		t.Fatalf("stranger's pickup = %+v, want NotFound", r)
	}
	if r := exec("bad", dispatch.Command{Accept: &dispatch.AcceptCmd{OfferID: uuid.NewString()}}); r.Err == nil || r.Err.Code != apperr.NotFound {
		t.Fatalf("unknown offer = %+v", r)
	}
}

// assignedTask creates the task of req, assigns it to a new courier at Berlin (by car) and returns the
// task as created, the courier and a function that executes the courier's command under an id.
func assignedTask(t *testing.T, sys *dispatchtest.System, req dispatch.CreateRequest) (dispatch.Task, dispatchtest.Courier, func(id string, cmd dispatch.Command) dispatch.CommandResult) {
	t.Helper()
	tk, err := sys.Service.CreateTask(dispatchtest.Customer(uuid.NewString()), req)
	if err != nil {
		t.Fatal(err)
	}
	c := sys.AddCourier(t, dispatchtest.Berlin, "car", true)
	if _, err := sys.Service.AssignTask(dispatchtest.Dispatcher(), dispatch.AssignRequest{ID: tk.ID, CourierID: c.ID}); err != nil {
		t.Fatal(err)
	}
	return tk, c, func(id string, cmd dispatch.Command) dispatch.CommandResult {
		return sys.Service.Execute(c.Ctx, c.ID, id, cmd)
	}
}

func TestProofRequirements(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true})
	req := dispatchtest.Request(uuid.NewString(), dispatchtest.Berlin, "")
	req.ParcelBarcode = "PKG-123"
	req.ProofRequirements = []dispatch.ProofRequirement{
		{Kind: dispatch.ProofBarcode, Stage: dispatch.StagePickup},
		{Kind: dispatch.ProofCode, Stage: dispatch.StageDropoff},
	}
	tk, _, exec := assignedTask(t, sys, req)
	if r := exec("p0", dispatch.Command{Pickup: &dispatch.PickupCmd{TaskID: tk.ID}}); r.Err == nil || r.Err.Reason != dispatch.ReasonProofRequired || r.Err.Metadata["kind"] != "BARCODE" {
		t.Fatalf("pickup without barcode = %+v", r)
	}
	if r := exec("p1", dispatch.Command{Pickup: &dispatch.PickupCmd{TaskID: tk.ID, Inline: []dispatch.InlineProof{{Kind: dispatch.ProofBarcode, Barcode: "WRONG"}}}}); r.Err == nil || r.Err.Reason != dispatch.ReasonBarcodeMismatch {
		t.Fatalf("pickup with the wrong barcode = %+v", r)
	}
	// The code at the pickup, a stage that takes none: refused, with no attempt left there, and not
	// counted against the dropoff's attempts.
	code := tk.DeliveryCode
	pc := exec("pc", dispatch.Command{Pickup: &dispatch.PickupCmd{TaskID: tk.ID, Inline: []dispatch.InlineProof{{Kind: dispatch.ProofBarcode, Barcode: "PKG-123"}, {Kind: dispatch.ProofCode, Code: code}}}})
	if pc.Err == nil || pc.Err.Code != apperr.FailedPrecondition || pc.Err.Reason != dispatch.ReasonCodeMismatch || len(pc.Err.Metadata) != 1 || pc.Err.Metadata["attempts_left"] != "0" {
		t.Fatalf("pickup with the code = %+v, want CODE_MISMATCH with attempts_left 0", pc.Err)
	}
	if r := exec("p2", dispatch.Command{Pickup: &dispatch.PickupCmd{TaskID: tk.ID, Inline: []dispatch.InlineProof{{Kind: dispatch.ProofBarcode, Barcode: "PKG-123"}}}}); r.Err != nil {
		t.Fatalf("pickup with the barcode = %+v", r.Err)
	}
	wrong := "0000"
	if code == wrong {
		wrong = "1111"
	}
	r := exec("d1", dispatch.Command{Deliver: &dispatch.DeliverCmd{TaskID: tk.ID, Inline: []dispatch.InlineProof{{Kind: dispatch.ProofCode, Code: wrong}}}})
	if r.Err == nil || r.Err.Reason != dispatch.ReasonCodeMismatch || r.Err.Metadata["attempts_left"] != "4" {
		t.Fatalf("wrong code = %+v", r)
	}
	// The wrong attempt was stored with the command: resending it under the same id must not count twice
	// (the session answers it from the store); a new id counts.
	r = exec("d2", dispatch.Command{Deliver: &dispatch.DeliverCmd{TaskID: tk.ID, Inline: []dispatch.InlineProof{{Kind: dispatch.ProofCode, Code: wrong}}}})
	if r.Err == nil || r.Err.Metadata["attempts_left"] != "3" {
		t.Fatalf("second wrong code = %+v", r)
	}
	r = exec("d3", dispatch.Command{Deliver: &dispatch.DeliverCmd{TaskID: tk.ID, Inline: []dispatch.InlineProof{{Kind: dispatch.ProofCode, Code: code}}}})
	if r.Err != nil || r.Task.State != dispatch.StateDelivered {
		t.Fatalf("right code = %+v", r)
	}
	if n := len(r.Task.Proofs); n != 2 || r.Task.Proofs[0].Value != "PKG-123" || r.Task.Proofs[1].Kind != dispatch.ProofCode || r.Task.Proofs[1].Value != "" {
		t.Fatalf("proofs %+v", r.Task.Proofs)
	}
}

// A code refused without being counted (at the pickup, or once no attempt is left) changes nothing:
// the task keeps its version (its etag) and update time, so a courier's app sending codes cannot make a
// dispatcher's etag stale nor send watchers the task again.
func TestUncountedCodesLeaveTheTaskAsItIs(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true})
	req := dispatchtest.Request(uuid.NewString(), dispatchtest.Berlin, "")
	req.ProofRequirements = []dispatch.ProofRequirement{{Kind: dispatch.ProofCode, Stage: dispatch.StageDropoff}}
	tk, c, exec := assignedTask(t, sys, req)
	version := func() (int64, time.Time) {
		t.Helper()
		got, err := sys.Store.GetTask(c.Ctx, tk.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got.Version, got.UpdateTime
	}
	code := func(c string) []dispatch.InlineProof {
		return []dispatch.InlineProof{{Kind: dispatch.ProofCode, Code: c}}
	}
	wrong := "0000"
	if tk.DeliveryCode == wrong {
		wrong = "1111"
	}

	v0, u0 := version()
	if r := exec("pc", dispatch.Command{Pickup: &dispatch.PickupCmd{TaskID: tk.ID, Inline: code(tk.DeliveryCode)}}); r.Err == nil || r.Err.Metadata["attempts_left"] != "0" {
		t.Fatalf("pickup with the code = %+v, want CODE_MISMATCH with attempts_left 0", r.Err)
	}
	if v, u := version(); v != v0 || !u.Equal(u0) {
		t.Errorf("after a code at the pickup: version %d, update time %v, want %d, %v (unchanged)", v, u, v0, u0)
	}
	if r := exec("p", dispatch.Command{Pickup: &dispatch.PickupCmd{TaskID: tk.ID}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	for i := range dispatch.MaxCodeAttempts {
		if r := exec(fmt.Sprintf("w%d", i), dispatch.Command{Deliver: &dispatch.DeliverCmd{TaskID: tk.ID, Inline: code(wrong)}}); r.Err == nil || r.Err.Reason != dispatch.ReasonCodeMismatch {
			t.Fatalf("wrong code %d = %+v", i, r)
		}
	}
	v1, u1 := version()
	for i, c := range []string{wrong, tk.DeliveryCode} {
		r := exec(fmt.Sprintf("x%d", i), dispatch.Command{Deliver: &dispatch.DeliverCmd{TaskID: tk.ID, Inline: code(c)}})
		if r.Err == nil || r.Err.Reason != dispatch.ReasonCodeMismatch || r.Err.Metadata["attempts_left"] != "0" {
			t.Fatalf("code %d after the last attempt = %+v, want CODE_MISMATCH with attempts_left 0", i, r)
		}
	}
	if v, u := version(); v != v1 || !u.Equal(u1) {
		t.Errorf("after codes with no attempt left: version %d, update time %v, want %d, %v (unchanged)", v, u, v1, u1)
	}
	// Each outcome is still final and stored under its command id.
	if rec, found, err := sys.Store.Command(c.Ctx, c.ID, "x1"); err != nil || !found || rec.Err == nil || rec.Err.Reason != dispatch.ReasonCodeMismatch {
		t.Errorf("stored outcome of x1 = %+v, %v, %v, want CODE_MISMATCH", rec, found, err)
	}
}

// TestCodeAttemptsUsedUp: once a task has taken its wrong codes, even the right code is refused, and
// nothing gives it more attempts; the error tells the courier the way out the contract names (report the
// delivery as failed), where it said "ask a dispatcher", who has no call for it. The failure goes through.
func TestCodeAttemptsUsedUp(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true})
	req := dispatchtest.Request(uuid.NewString(), dispatchtest.Berlin, "")
	req.ProofRequirements = []dispatch.ProofRequirement{{Kind: dispatch.ProofCode, Stage: dispatch.StageDropoff, Policy: dispatch.ProofRequired}}
	tk, _, exec := assignedTask(t, sys, req)
	code := func(c string) []dispatch.InlineProof {
		return []dispatch.InlineProof{{Kind: dispatch.ProofCode, Code: c}}
	}
	wrong := "0000"
	if tk.DeliveryCode == wrong {
		wrong = "1111"
	}
	if r := exec("p", dispatch.Command{Pickup: &dispatch.PickupCmd{TaskID: tk.ID}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	for i := range dispatch.MaxCodeAttempts {
		if r := exec(fmt.Sprintf("w%d", i), dispatch.Command{Deliver: &dispatch.DeliverCmd{TaskID: tk.ID, Inline: code(wrong)}}); r.Err == nil || r.Err.Message != "the code does not match" {
			t.Fatalf("wrong code %d = %+v", i, r.Err)
		}
	}
	r := exec("right", dispatch.Command{Deliver: &dispatch.DeliverCmd{TaskID: tk.ID, Inline: code(tk.DeliveryCode)}})
	want := &dispatch.CommandError{Code: apperr.FailedPrecondition, Reason: dispatch.ReasonCodeMismatch,
		Message:  "too many wrong codes: the task takes no more; if the code is required, report the delivery as failed",
		Metadata: map[string]string{"attempts_left": "0"}}
	if r.Err == nil || r.Err.Code != want.Code || r.Err.Reason != want.Reason || r.Err.Message != want.Message || !maps.Equal(r.Err.Metadata, want.Metadata) {
		t.Fatalf("the right code after the last attempt = %+v, want %+v", r.Err, want)
	}
	if r := exec("d", dispatch.Command{Deliver: &dispatch.DeliverCmd{TaskID: tk.ID}}); r.Err == nil || r.Err.Reason != dispatch.ReasonProofRequired {
		t.Fatalf("delivered without the code = %+v, want PROOF_REQUIRED", r.Err)
	}
	if r := exec("f", dispatch.Command{Fail: &dispatch.FailCmd{TaskID: tk.ID, Reason: dispatch.FailureRecipientRefused}}); r.Err != nil || r.Task.State != dispatch.StateFailed {
		t.Fatalf("failed = %+v, %v; want the task FAILED", r.Err, r.Task.State)
	}
}

func TestCommandOutcomesAreStored(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true})
	tk, c := assigned(t, sys)
	cmd := dispatch.Command{Pickup: &dispatch.PickupCmd{TaskID: tk.ID}}
	if r := sys.Service.Execute(c.Ctx, c.ID, "cmd-1", cmd); r.Err != nil {
		t.Fatal(r.Err)
	}
	rec, found, err := sys.Store.Command(c.Ctx, c.ID, "cmd-1")
	if err != nil || !found || rec.Err != nil || rec.TaskID != tk.ID || rec.Fingerprint != cmd.Fingerprint() {
		t.Fatalf("stored outcome %+v, %v, %v", rec, found, err)
	}
	bad := dispatch.Command{Accept: &dispatch.AcceptCmd{OfferID: uuid.NewString()}}
	sys.Service.Execute(c.Ctx, c.ID, "cmd-2", bad)
	rec, found, err = sys.Store.Command(c.Ctx, c.ID, "cmd-2")
	if err != nil || !found || rec.Err == nil || rec.Err.Code != apperr.NotFound {
		t.Fatalf("stored failure %+v, %v, %v", rec, found, err)
	}
}

func TestFingerprintIgnoresTheTimeZone(t *testing.T) {
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	berlin := time.FixedZone("CET", 3600)
	a := dispatch.Command{Deliver: &dispatch.DeliverCmd{TaskID: "t", OccurTime: at}}
	b := dispatch.Command{Deliver: &dispatch.DeliverCmd{TaskID: "t", OccurTime: at.In(berlin)}}
	if a.Fingerprint() != b.Fingerprint() {
		t.Fatal("the same instant in two time zones gave two fingerprints")
	}
	c := dispatch.Command{Deliver: &dispatch.DeliverCmd{TaskID: "t", OccurTime: at.Add(time.Second)}}
	if a.Fingerprint() == c.Fingerprint() {
		t.Fatal("two instants gave one fingerprint")
	}
}

// A command whose caller went away mid-way (the courier's stream was cancelled) is UNAVAILABLE, to be sent
// again with the same id, and is not logged as an error: an app dropping off is not a fault of dispatch.
func TestCommandOfACancelledCallerIsNotAnError(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true, Options: dispatch.Options{Logger: logger}})
	tk, c := assigned(t, sys)
	ctx, cancel := context.WithCancel(c.Ctx)
	cancel()
	r := sys.Service.Execute(ctx, c.ID, "p1", dispatch.Command{Pickup: &dispatch.PickupCmd{TaskID: tk.ID}})
	if r.Err == nil || r.Err.Code != apperr.Unavailable {
		t.Fatalf("pickup with a cancelled context = %+v, want Unavailable", r)
	}
	if strings.Contains(logs.String(), `"level":"ERROR"`) {
		t.Fatalf("an interrupted command was logged as an error:\n%s", logs.String())
	}
	// Sent again with the same id once the caller is back, it applies.
	if r := sys.Service.Execute(c.Ctx, c.ID, "p1", dispatch.Command{Pickup: &dispatch.PickupCmd{TaskID: tk.ID}}); r.Err != nil || r.Task.State != dispatch.StatePickedUp {
		t.Fatalf("pickup sent again = %+v", r)
	}
}

// TestCaptureTime: a proof's capture time (by the device clock) is kept when within 7 days of the
// server's clock and from 2000 to 2100, in UTC to the microsecond; otherwise the device's clock was
// wrong and none is kept.
func TestCaptureTime(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	week := 7 * 24 * time.Hour
	for _, c := range []struct {
		name     string
		in, want time.Time
	}{
		{"unset", time.Time{}, time.Time{}},
		{"an hour ago, in Berlin, with nanoseconds", now.Add(-time.Hour + 1500).In(time.FixedZone("CET", 3600)), now.Add(-time.Hour + 1000)},
		{"a week ago", now.Add(-week), now.Add(-week)},
		{"a week and a second ago", now.Add(-week - time.Second), time.Time{}},
		{"a week ahead", now.Add(week), now.Add(week)},
		{"a week and a second ahead", now.Add(week + time.Second), time.Time{}},
		{"1970", time.Unix(0, 0), time.Time{}},
	} {
		if got := dispatch.CaptureTime(c.in, now); !got.Equal(c.want) || got.Location() != time.UTC && !got.IsZero() {
			t.Errorf("%s: captureTime(%v) = %v, want %v", c.name, c.in, got, c.want)
		}
	}
	late := time.Date(2099, 12, 31, 23, 0, 0, 0, time.UTC)
	if got := dispatch.CaptureTime(time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC), late); !got.IsZero() {
		t.Errorf("2100-01-01 = %v, want none (from 2000 to 2100 only)", got)
	}
	if got := dispatch.CaptureTime(late, late); !got.Equal(late) {
		t.Errorf("2099-12-31 = %v, want it kept", got)
	}
}
