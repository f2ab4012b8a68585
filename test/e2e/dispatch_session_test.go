package e2e_test

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
)

// TestCourierSessionEndsWhenTheAccountIsSuspended: suspending or deleting a courier's account during
// their session ends it as the contract says (StreamAssignments: "PERMISSION_DENIED when ... the
// courier's account or profile was suspended or deleted during the session (do not reconnect)"; Drain:
// ACCOUNT_DISABLED): first a drain with ACCOUNT_DISABLED, then PERMISSION_DENIED. Before, a courier app
// built from the protos alone saw the stream end with UNAUTHENTICATED and no drain, which tells it to
// refresh its token and reconnect. The courier then gets no offers: the engine offers only to couriers
// holding a session, and a task created afterwards finds the courier, still AVAILABLE in the courier
// service, excluded as NOT_CONNECTED.
func TestCourierSessionEndsWhenTheAccountIsSuspended(t *testing.T) {
	for _, tc := range []struct{ name, method, body string }{
		{"suspended", http.MethodPatch, `{"status": "USER_STATUS_SUSPENDED"}`},
		{"deleted", http.MethodDelete, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			d := newDispatchSetup(ctx, t)
			session := openSession(ctx, t, d.dispatch, d.courier.access, 0, 0)

			code, _, body := d.s.rest(t, tc.method, "/v1/users/"+d.courier.userID, d.admin.access, tc.body)
			if code != http.StatusOK {
				t.Fatalf("%s the courier's account = %d %v, want 200", tc.name, code, body)
			}
			msg := session.recv()
			if msg.GetDrain().GetCode() != dispatchv1.DrainReason_DRAIN_REASON_ACCOUNT_DISABLED || msg.GetCursor() != 0 {
				t.Fatalf("message after the change = %v, want a drain with ACCOUNT_DISABLED and cursor 0", msg)
			}
			if _, err := session.stream.Recv(); status.Code(err) != codes.PermissionDenied {
				t.Fatalf("Recv after the drain = %v, want PERMISSION_DENIED", err)
			}

			task := createTaskREST(t, d.s, d.customer.access, "e2e-after-"+tc.name)
			dec := firstDecision(ctx, t, d, task.GetId())
			if dec.GetOutcome() != dispatchv1.DecisionOutcome_DECISION_OUTCOME_ALL_EXCLUDED || dec.GetWinnerCourierId() != "" ||
				len(dec.GetCandidates()) != 1 || dec.GetCandidates()[0].GetCourierId() != d.courierID ||
				dec.GetCandidates()[0].GetExclusionReason() != dispatchv1.ExclusionReason_EXCLUSION_REASON_NOT_CONNECTED {
				t.Fatalf("first decision for a task created after the session ended = %v, want ALL_EXCLUDED with courier %s NOT_CONNECTED", dec, d.courierID)
			}
		})
	}
}

// firstDecision waits for the engine's first assignment decision for taskID and returns it.
func firstDecision(ctx context.Context, t *testing.T, d *dispatchSetup, taskID string) *dispatchv1.AssignmentDecision {
	t.Helper()
	for {
		var expl dispatchv1.AssignmentExplanation
		code, body := d.s.restProto(t, http.MethodGet, "/v1/tasks/"+taskID+"/explanation", d.admin.access, "", &expl)
		if code != http.StatusOK {
			t.Fatalf("GET explanation as admin = %d %v, want 200", code, body)
		}
		if len(expl.GetDecisions()) > 0 {
			return expl.GetDecisions()[0]
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no assignment decision for task %s: %v", taskID, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestAssignTaskRefusesASuspendedCourier: a dispatcher cannot give a task to a courier whose account is
// suspended (AssignTask: "FAILED_PRECONDITION when ... the courier cannot take it"). The courier service
// still reports the courier AVAILABLE with free capacity, so before, the task became ASSIGNED to someone
// who could not sign in. After the reactivation the same call succeeds.
func TestAssignTaskRefusesASuspendedCourier(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	d := newDispatchSetup(ctx, t)
	task := createTaskREST(t, d.s, d.customer.access, "e2e-suspended-1")
	assign := `{"courierId": "` + d.courierID + `"}`

	code, _, body := d.s.rest(t, http.MethodPatch, "/v1/users/"+d.courier.userID, d.admin.access, `{"status": "USER_STATUS_SUSPENDED"}`)
	if code != http.StatusOK {
		t.Fatalf("suspend the courier = %d %v, want 200", code, body)
	}
	code, _, body = d.s.rest(t, http.MethodPost, "/v1/tasks/"+task.GetId()+":assign", d.admin.access, assign)
	want := "courier " + d.courierID + " cannot take tasks: their account is suspended or deleted"
	if code != http.StatusBadRequest || errStatus(body) != "FAILED_PRECONDITION" || str(body, "error", "message") != want {
		t.Fatalf("assign to the suspended courier = %d %v, want 400 FAILED_PRECONDITION %q", code, body, want)
	}

	code, _, body = d.s.rest(t, http.MethodPatch, "/v1/users/"+d.courier.userID, d.admin.access, `{"status": "USER_STATUS_ACTIVE"}`)
	if code != http.StatusOK {
		t.Fatalf("reactivate the courier = %d %v, want 200", code, body)
	}
	code, _, body = d.s.rest(t, http.MethodPost, "/v1/tasks/"+task.GetId()+":assign", d.admin.access, assign)
	if code != http.StatusOK || str(body, "state") != "TASK_STATE_ASSIGNED" || str(body, "courierId") != d.courierID {
		t.Fatalf("assign after the reactivation = %d %v, want 200 and the task ASSIGNED to %s", code, body, d.courierID)
	}
}

// TestOfferIsWithdrawnWhenTheCourierIsSuspended: suspending a courier's account while an offer waits for
// their answer ends their session (a drain with ACCOUNT_DISABLED, then PERMISSION_DENIED) and withdraws
// the offer at once: the task is PENDING again, for the next candidate, and the explanation shows the
// offer WITHDRAWN, not EXPIRED 20 s later (the courier could never have answered it).
func TestOfferIsWithdrawnWhenTheCourierIsSuspended(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	d := newDispatchSetup(ctx, t)
	session := openSession(ctx, t, d.dispatch, d.courier.access, 0, 0)
	task := createTaskREST(t, d.s, d.customer.access, "e2e-withdrawn-1")
	offer, _ := session.nextOffer()
	if offer.GetTask().GetId() != task.GetId() {
		t.Fatalf("offer = %v, want one for task %s", offer, task.GetId())
	}
	offerID := offer.GetOffer().GetId()

	code, _, body := d.s.rest(t, http.MethodPatch, "/v1/users/"+d.courier.userID, d.admin.access, `{"status": "USER_STATUS_SUSPENDED"}`)
	if code != http.StatusOK {
		t.Fatalf("suspend the courier's account = %d %v, want 200", code, body)
	}
	if msg := session.recv(); msg.GetDrain().GetCode() != dispatchv1.DrainReason_DRAIN_REASON_ACCOUNT_DISABLED {
		t.Fatalf("message after the suspension = %v, want a drain with ACCOUNT_DISABLED", msg)
	}
	if _, err := session.stream.Recv(); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("Recv after the drain = %v, want PERMISSION_DENIED", err)
	}

	waitWithdrawnToPending(ctx, t, d, task.GetId(), offerID)
}

// waitWithdrawnToPending waits until taskID is no longer OFFERED, then checks that it is PENDING and that
// its explanation shows offerID once, WITHDRAWN (not EXPIRED: the suspension took it back).
func waitWithdrawnToPending(ctx context.Context, t *testing.T, d *dispatchSetup, taskID, offerID string) {
	t.Helper()
	for {
		got := &dispatchv1.Task{}
		if code, body := d.s.restProto(t, http.MethodGet, "/v1/tasks/"+taskID, d.admin.access, "", got); code != http.StatusOK {
			t.Fatalf("GET task = %d %v, want 200", code, body)
		}
		if got.GetState() != dispatchv1.TaskState_TASK_STATE_OFFERED {
			if got.GetState() != dispatchv1.TaskState_TASK_STATE_PENDING {
				t.Fatalf("task after the suspension = %v, want PENDING", got.GetState())
			}
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the task is still offered to the suspended courier: %v", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	var expl dispatchv1.AssignmentExplanation
	if code, body := d.s.restProto(t, http.MethodGet, "/v1/tasks/"+taskID+"/explanation", d.admin.access, "", &expl); code != http.StatusOK {
		t.Fatalf("GET explanation = %d %v, want 200", code, body)
	}
	var states []dispatchv1.OfferState
	for _, dec := range expl.GetDecisions() {
		for _, c := range dec.GetCandidates() {
			if c.GetOfferId() == offerID {
				states = append(states, c.GetOfferState())
			}
		}
	}
	if len(states) != 1 || states[0] != dispatchv1.OfferState_OFFER_STATE_WITHDRAWN {
		t.Errorf("offer %s in the explanation: %v, want WITHDRAWN, not EXPIRED (%v)", offerID, states, &expl)
	}
}

// metricsText returns the process's admin /metrics, as text.
func (s *system) metricsText(t *testing.T) string {
	t.Helper()
	resp, err := http.Get("http://" + s.Admin + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read /metrics: %v", err)
	}
	return string(raw)
}

// gauge returns the value of the unlabelled series name on the process's admin /metrics.
func (s *system) gauge(t *testing.T, name string) float64 {
	t.Helper()
	for line := range strings.Lines(s.metricsText(t)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metrics line %q: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no %s", name)
	return 0
}

// TestOfferIsWithdrawnWhenAClosedAppsCourierIsSuspended: the courier's app closed (no session left) while
// an offer waits for their answer; suspending their account withdraws the offer at once (the identity
// change reaches dispatch through the process's account cache), rather than letting it expire 20 s later,
// and the task is PENDING again.
func TestOfferIsWithdrawnWhenAClosedAppsCourierIsSuspended(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	d := newDispatchSetup(ctx, t)
	sessionCtx, closeApp := context.WithCancel(ctx)
	session := openSession(sessionCtx, t, d.dispatch, d.courier.access, 0, 0)
	task := createTaskREST(t, d.s, d.customer.access, "e2e-withdrawn-closed-1")
	offer, _ := session.nextOffer()
	if offer.GetTask().GetId() != task.GetId() {
		t.Fatalf("offer = %v, want one for task %s", offer, task.GetId())
	}
	offerID := offer.GetOffer().GetId()
	closeApp()
	for d.s.gauge(t, "lastmile_dispatch_courier_sessions") != 0 {
		select {
		case <-ctx.Done():
			t.Fatalf("the closed app's session never ended: %v", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}

	code, _, body := d.s.rest(t, http.MethodPatch, "/v1/users/"+d.courier.userID, d.admin.access, `{"status": "USER_STATUS_SUSPENDED"}`)
	if code != http.StatusOK {
		t.Fatalf("suspend the courier's account = %d %v, want 200", code, body)
	}
	waitWithdrawnToPending(ctx, t, d, task.GetId(), offerID)
}
