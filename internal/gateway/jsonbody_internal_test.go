package gateway

import (
	"strings"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
)

// TestBodyTimesAndDurationsSayTheirFormat: a time or a duration in a request body that protojson cannot
// read is named by its path and answered with the format it takes, as a query parameter is: protojson's
// own words were `invalid google.protobuf.Duration value "1m"`, naming neither the field nor the format
// (`ttl` of a share link, a time window's bounds, availability hours). Values that read are decoded.
func TestBodyTimesAndDurationsSayTheirFormat(t *testing.T) {
	const prefix = "the request body does not match the request: "
	tests := []struct {
		name string
		req  proto.Message
		body string
		want string
	}{
		{"duration with a unit", &dispatchv1.CreateTaskShareLinkRequest{}, `{"ttl":"1m"}`,
			`ttl must be a duration in seconds with an s suffix, such as 30s (got "1m") (line 1, column 8)`},
		{"duration as a number", &dispatchv1.CreateTaskShareLinkRequest{}, `{"ttl": 60}`,
			`ttl must be a duration in seconds with an s suffix, such as 30s (got 60) (line 1, column 9)`},
		{"duration out of range", &dispatchv1.CreateTaskShareLinkRequest{}, `{"ttl":"9999999999999s"}`,
			`ttl must be a duration in seconds with an s suffix, such as 30s (got "9999999999999s") (line 1, column 8)`},
		{"nested time", &dispatchv1.CreateTaskRequest{},
			`{"requestId":"r","pickup":{"address":"P","time_window":{"startTime":"2026-12-03 10:00:00Z"}}}`,
			`pickup.time_window.startTime must be a time in RFC 3339 format, such as 2026-01-02T15:04:05Z (got "2026-12-03 10:00:00Z") (line 1, column 69)`},
		{"time in a list", &courierv1.SetAvailabilityRequest{},
			`{"hours":["2026-12-03T10:00:00Z","tomorrow"],"available":true}`,
			`hours[1] must be a time in RFC 3339 format, such as 2026-01-02T15:04:05Z (got "tomorrow") (line 1, column 34)`},
		{"an object for a time", &dispatchv1.CreateTaskRequest{},
			`{"pickup":{"timeWindow":{"endTime":{"seconds":1}}}}`,
			`pickup.timeWindow.endTime must be a time in RFC 3339 format, such as 2026-01-02T15:04:05Z (got {"seconds":1}) (line 1, column 36)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dec := undelimited{&runtime.JSONPb{UnmarshalOptions: protojson.UnmarshalOptions{}}}.NewDecoder(strings.NewReader(tt.body))
			err := dec.Decode(tt.req)
			if err == nil || err.Error() != prefix+tt.want {
				t.Errorf("Decode(%s) = %v, want %q", tt.body, err, prefix+tt.want)
			}
		})
	}
	var req dispatchv1.CreateTaskShareLinkRequest
	dec := undelimited{&runtime.JSONPb{}}.NewDecoder(strings.NewReader(`{"ttl":"90.5s","taskId":"t"}`))
	if err := dec.Decode(&req); err != nil || req.GetTtl().AsDuration().Seconds() != 90.5 {
		t.Errorf("Decode of a good duration = %v, ttl %v; want 90.5s", err, req.GetTtl())
	}
}
