package e2e_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
)

// TestCourierSessionEndsWhenTheAccountIsSuspended: suspending a courier's account during their session
// ends it as the contract says (StreamAssignments: "PERMISSION_DENIED when ... the courier's account or
// profile was suspended or deleted during the session (do not reconnect)"; Drain: ACCOUNT_DISABLED):
// first a drain with ACCOUNT_DISABLED, then PERMISSION_DENIED. Before, a courier app built from the
// protos alone saw the stream end with UNAUTHENTICATED and no drain, which tells it to refresh its token
// and reconnect.
func TestCourierSessionEndsWhenTheAccountIsSuspended(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	d := newDispatchSetup(ctx, t)
	session := openSession(ctx, t, d.dispatch, d.courier.access, 0, 0)

	code, _, body := d.s.rest(t, http.MethodPatch, "/v1/users/"+d.courier.userID, d.admin.access, `{"status": "USER_STATUS_SUSPENDED"}`)
	if code != http.StatusOK || str(body, "status") != "USER_STATUS_SUSPENDED" {
		t.Fatalf("suspend the courier = %d %v, want 200", code, body)
	}
	msg := session.recv()
	if msg.GetDrain().GetCode() != dispatchv1.DrainReason_DRAIN_REASON_ACCOUNT_DISABLED || msg.GetCursor() != 0 {
		t.Fatalf("message after the suspension = %v, want a drain with ACCOUNT_DISABLED and cursor 0", msg)
	}
	if _, err := session.stream.Recv(); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("Recv after the drain = %v, want PERMISSION_DENIED", err)
	}
}
