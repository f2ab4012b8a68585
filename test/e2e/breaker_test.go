package e2e_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
)

// breakerOpens returns the sum of lastmile_grpc_client_breaker_opens_total over every target of the
// process, read from its admin /metrics.
func (s *system) breakerOpens(t *testing.T) float64 {
	t.Helper()
	var total float64
	found := false
	for line := range strings.Lines(s.metricsText(t)) {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "lastmile_grpc_client_breaker_opens_total{") {
			continue
		}
		found = true
		var v float64
		fields := strings.Fields(line)
		if _, err := fmt.Sscan(fields[len(fields)-1], &v); err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		total += v
	}
	if !found {
		t.Fatal("/metrics has no lastmile_grpc_client_breaker_opens_total: the gateway's breakers are not exported")
	}
	return total
}

// TestNoCallerOpensTheBreaker is issue 8's repro: GetAvailability from year 1 to year 9999 overflowed the
// range rule, the server answered Internal, and five such REST calls opened the gateway's breaker to
// courier so that every courier call answered 503. The request is now the caller's error, over REST and
// gRPC, and any number of them leaves courier reachable.
func TestNoCallerOpensTheBreaker(t *testing.T) {
	s := startWithAdmin(t)
	admin := s.login(t, adminEmail, adminPassword)
	courierID, cora := registerCourier(t, s, admin.access, "cora@example.com")

	const query = "?startTime=0001-01-01T00:00:01Z&endTime=9999-12-31T00:00:00Z"
	for i := range 20 {
		code, _, body := s.rest(t, http.MethodGet, "/v1/couriers/"+courierID+"/availability"+query, cora.access, "")
		if code != http.StatusBadRequest {
			t.Fatalf("GET availability 0001..9999 #%d = %d %v, want 400", i+1, code, body)
		}
		if i > 0 {
			continue
		}
		text := mustJSON(t, body)
		// REST names the fields by their JSON names.
		for _, field := range []string{`"startTime"`, `"endTime"`} {
			if !strings.Contains(text, field) {
				t.Errorf("400 body %s does not name the field %s", text, field)
			}
		}
	}
	if got := s.breakerOpens(t); got != 0 {
		t.Errorf("breaker opens after 20 bad requests = %v, want 0", got)
	}
	from := time.Now().UTC().Truncate(time.Hour)
	code, _, body := s.rest(t, http.MethodGet, "/v1/couriers/"+courierID+"/availability?startTime="+
		from.Format(time.RFC3339)+"&endTime="+from.Add(2*time.Hour).Format(time.RFC3339), cora.access, "")
	if code != http.StatusOK {
		t.Fatalf("GET availability for two hours after the bad requests = %d %v, want 200", code, body)
	}

	ctx, cancel := context.WithTimeout(bearer(context.Background(), cora.access), 10*time.Second)
	defer cancel()
	client := courierv1.NewCourierServiceClient(s.grpcConn(t, ""))
	_, err := client.GetAvailability(ctx, &courierv1.GetAvailabilityRequest{
		CourierId: courierID,
		StartTime: timestamppb.New(time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC)),
		EndTime:   timestamppb.New(time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)),
	})
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("GetAvailability(0001..9999) over gRPC = %v %q, want InvalidArgument", st.Code(), st.Message())
	}
	var fields []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	for _, want := range []string{"start_time", "end_time"} {
		if !slices.Contains(fields, want) {
			t.Errorf("GetAvailability(0001..9999) field violations = %v, want %s among them", fields, want)
		}
	}
}
