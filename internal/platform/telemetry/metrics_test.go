package telemetry_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"lastmile/internal/platform/telemetry"
)

func TestNewRegistryRuntimeMetrics(t *testing.T) {
	reg := telemetry.NewRegistry()
	for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes"} {
		got, err := testutil.GatherAndCount(reg, name)
		if err != nil {
			t.Fatalf("GatherAndCount(%q): %v", name, err)
		}
		if got != 1 {
			t.Errorf("GatherAndCount(%q) = %d, want 1", name, got)
		}
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) != 0 {
		t.Errorf("GatherAndLint() = %v, %v; want no problems", problems, err)
	}
}

func TestBuildInfo(t *testing.T) {
	reg := telemetry.NewRegistry()
	telemetry.BuildInfo(reg, "v1.2.3", "abc123")

	want := fmt.Sprintf(`
# HELP lastmile_build_info Build information of the running binary; the value is always 1.
# TYPE lastmile_build_info gauge
lastmile_build_info{commit="abc123",goversion=%q,version="v1.2.3"} 1
`, runtime.Version())
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "lastmile_build_info"); err != nil {
		t.Errorf("lastmile_build_info mismatch: %v", err)
	}
	if got, err := testutil.GatherAndCount(reg, "go_goroutines"); err != nil || got != 1 {
		t.Errorf("GatherAndCount(go_goroutines) = %d, %v; want 1, nil", got, err)
	}
}

func TestRegisterReusesAnEqualCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	newCounter := func() prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "lastmile_test_total", Help: "Test."})
	}
	first, err := telemetry.Register(reg, newCounter())
	if err != nil {
		t.Fatalf("Register(first) = %v", err)
	}
	second, err := telemetry.Register(reg, newCounter())
	if err != nil {
		t.Fatalf("Register(equal collector) = %v, want the existing one", err)
	}
	second.Inc()
	if got := testutil.ToFloat64(first); got != 1 {
		t.Errorf("first counter after incrementing the second = %v, want 1 (one shared series)", got)
	}
	clash := prometheus.NewGauge(prometheus.GaugeOpts{Name: "lastmile_test_total", Help: "Other."})
	if _, err := telemetry.Register(reg, clash); err == nil {
		t.Error("Register(a different collector under the same name) = nil error, want the registry's error")
	}
	if c, err := telemetry.Register(nil, newCounter()); err != nil || c == nil {
		t.Errorf("Register(nil registry) = %v, %v; want the collector, unregistered", c, err)
	}
}
