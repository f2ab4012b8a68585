package telemetry_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

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
