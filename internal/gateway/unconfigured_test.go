package gateway_test

import (
	"encoding/json"
	"strings"
	"testing"

	"lastmile/internal/gateway"
	"lastmile/internal/platform/telemetry"
	"lastmile/internal/platform/telemetry/logtest"
)

// TestUnconfiguredServiceIsLogged checks that a service without a connection (a gateway in front of a
// subset) is logged once, naming it under grpc_service beside the process's own "service" key, which a
// second "service" key would hide from log tools.
func TestUnconfiguredServiceIsLogged(t *testing.T) {
	var logs logtest.Buffer
	_, err := gateway.New(t.Context(), gateway.Config{Logger: telemetry.NewLogger(&logs, telemetry.LogOptions{Service: "lastmile"})},
		[]gateway.Service{{Name: "lastmile.route.v1.RouteService"}})
	if err != nil {
		t.Fatalf("gateway.New() = %v", err)
	}
	var got []map[string]any
	for line := range strings.Lines(logs.String()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		if rec["msg"] == "gateway: service not configured, its routes are not served" {
			got = append(got, rec)
		}
	}
	if len(got) != 1 || got[0]["service"] != "lastmile" || got[0]["grpc_service"] != "lastmile.route.v1.RouteService" {
		t.Errorf("unconfigured service lines = %v, want one with service lastmile, grpc_service lastmile.route.v1.RouteService; logs:\n%s", got, logs.String())
	}
}
