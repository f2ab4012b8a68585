package gateway

import (
	"net/url"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/utilities"
	"google.golang.org/protobuf/proto"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
)

// TestQueryParserWordsItsErrors: a list names its first value that is not taken, and timestamps and
// durations say their format; values that parse are set as grpc-gateway sets them.
func TestQueryParserWordsItsErrors(t *testing.T) {
	tests := []struct {
		name   string
		req    proto.Message
		values url.Values
		want   string
	}{
		{"list of enums", &dispatchv1.ListTasksRequest{}, url.Values{"states": {"TASK_STATE_PENDING", "PENDING"}},
			`states must be one of TASK_STATE_PENDING, TASK_STATE_OFFERED, TASK_STATE_ASSIGNED, TASK_STATE_PICKED_UP, TASK_STATE_DELIVERED, TASK_STATE_CANCELLED, TASK_STATE_FAILED, TASK_STATE_UNASSIGNABLE (got "PENDING")`},
		{"timestamp", &courierv1.GetAvailabilityRequest{}, url.Values{"endTime": {"2026-01-02T15:04:05Z"}, "startTime": {"yesterday"}},
			`startTime must be a time in RFC 3339 format, such as 2026-01-02T15:04:05Z (got "yesterday")`},
		// ?time=2026-12-02T10:00:00+02:00 as typed: the + arrives as a space.
		{"timestamp with an unescaped +", &courierv1.IsAvailableRequest{}, url.Values{"time": {"2026-12-02T10:00:00 02:00"}},
			`time must be a time in RFC 3339 format, such as 2026-01-02T15:04:05Z (got "2026-12-02T10:00:00 02:00": a + in a query string stands for a space, so send the offset's + as %2B)`},
		{"a space that is no +", &courierv1.IsAvailableRequest{}, url.Values{"time": {"2026-12-02 10:00:00Z"}},
			`time must be a time in RFC 3339 format, such as 2026-01-02T15:04:05Z (got "2026-12-02 10:00:00Z")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := (&queryParser{}).Parse(tt.req, tt.values, utilities.NewDoubleArray(nil))
			if err == nil || err.Error() != tt.want {
				t.Errorf("Parse(%v) = %v, want %q", tt.values, err, tt.want)
			}
		})
	}
	var req dispatchv1.ListTasksRequest
	if err := (&queryParser{}).Parse(&req, url.Values{"states": {"TASK_STATE_PENDING", "TASK_STATE_OFFERED"}, "pageSize": {"3"}}, utilities.NewDoubleArray(nil)); err != nil {
		t.Fatalf("Parse of good values: %v", err)
	}
	if len(req.GetStates()) != 2 || req.GetPageSize() != 3 {
		t.Errorf("Parse set %v", &req)
	}
}
