package grpcapi_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/grpcapi"
)

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := grpcapi.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	// A second registration on the same registry shares the series.
	m2, err := grpcapi.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.OfferSent()
	m2.OfferSent()
	m.OfferAnswered(dispatch.OfferDeclined)
	m.Assigned(42 * time.Second)
	m.Decided(&dispatch.Decision{Outcome: dispatch.OutcomeOffered, Degraded: true, Elapsed: 3 * time.Millisecond})
	m.SessionOpened()
	m.SessionOpened()
	m.SessionClosed()
	m.Replayed(3)
	m.Upload("committed")
	err = testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP lastmile_dispatch_offers_sent_total Offers made to couriers.
# TYPE lastmile_dispatch_offers_sent_total counter
lastmile_dispatch_offers_sent_total 2
# HELP lastmile_dispatch_offers_closed_total Offers that left the open state, by outcome: accepted, declined, expired or withdrawn.
# TYPE lastmile_dispatch_offers_closed_total counter
lastmile_dispatch_offers_closed_total{outcome="accepted"} 0
lastmile_dispatch_offers_closed_total{outcome="declined"} 1
lastmile_dispatch_offers_closed_total{outcome="expired"} 0
lastmile_dispatch_offers_closed_total{outcome="withdrawn"} 0
# HELP lastmile_dispatch_courier_sessions Courier sessions (StreamAssignments) open on this replica.
# TYPE lastmile_dispatch_courier_sessions gauge
lastmile_dispatch_courier_sessions 1
# HELP lastmile_dispatch_replayed_deliveries_total Unacknowledged deliveries replayed to couriers when their session opened.
# TYPE lastmile_dispatch_replayed_deliveries_total counter
lastmile_dispatch_replayed_deliveries_total 3
# HELP lastmile_dispatch_uploads_total Proof uploads that reached a state: in_progress (started), committed, rejected or expired.
# TYPE lastmile_dispatch_uploads_total counter
lastmile_dispatch_uploads_total{state="committed"} 1
lastmile_dispatch_uploads_total{state="expired"} 0
lastmile_dispatch_uploads_total{state="in_progress"} 0
lastmile_dispatch_uploads_total{state="rejected"} 0
# HELP lastmile_dispatch_decisions_degraded_total Decisions made with the local ETA estimate because the route service was unavailable.
# TYPE lastmile_dispatch_decisions_degraded_total counter
lastmile_dispatch_decisions_degraded_total 1
`), "lastmile_dispatch_offers_sent_total", "lastmile_dispatch_offers_closed_total", "lastmile_dispatch_courier_sessions",
		"lastmile_dispatch_replayed_deliveries_total", "lastmile_dispatch_uploads_total", "lastmile_dispatch_decisions_degraded_total")
	if err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(reg, "lastmile_dispatch_time_to_assign_seconds", "lastmile_dispatch_decision_duration_seconds"); n != 2 {
		t.Errorf("histogram series = %d, want 2", n)
	}
}

// TestMetricsExportEveryOutcomeFromTheStart: after a restart, before any offer closed or upload ended,
// every outcome's and state's series is there at 0, so that rate() and alerts on them have data.
func TestMetricsExportEveryOutcomeFromTheStart(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := grpcapi.NewMetrics(reg); err != nil {
		t.Fatal(err)
	}
	err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP lastmile_dispatch_offers_closed_total Offers that left the open state, by outcome: accepted, declined, expired or withdrawn.
# TYPE lastmile_dispatch_offers_closed_total counter
lastmile_dispatch_offers_closed_total{outcome="accepted"} 0
lastmile_dispatch_offers_closed_total{outcome="declined"} 0
lastmile_dispatch_offers_closed_total{outcome="expired"} 0
lastmile_dispatch_offers_closed_total{outcome="withdrawn"} 0
# HELP lastmile_dispatch_uploads_total Proof uploads that reached a state: in_progress (started), committed, rejected or expired.
# TYPE lastmile_dispatch_uploads_total counter
lastmile_dispatch_uploads_total{state="committed"} 0
lastmile_dispatch_uploads_total{state="expired"} 0
lastmile_dispatch_uploads_total{state="in_progress"} 0
lastmile_dispatch_uploads_total{state="rejected"} 0
# HELP lastmile_dispatch_route_breaker_state State of dispatch's circuit breaker around the route service: 0 closed, 1 half-open, 2 open (ETAs from the local estimate).
# TYPE lastmile_dispatch_route_breaker_state gauge
lastmile_dispatch_route_breaker_state 0
# HELP lastmile_dispatch_route_breaker_opens_total How many times dispatch's circuit breaker around the route service opened.
# TYPE lastmile_dispatch_route_breaker_opens_total counter
lastmile_dispatch_route_breaker_opens_total 0
# HELP lastmile_dispatch_courier_woken_tasks_total Waiting tasks made due at once by a courier near them: available, freed or moved.
# TYPE lastmile_dispatch_courier_woken_tasks_total counter
lastmile_dispatch_courier_woken_tasks_total{reason="available"} 0
lastmile_dispatch_courier_woken_tasks_total{reason="freed"} 0
lastmile_dispatch_courier_woken_tasks_total{reason="moved"} 0
`+sweepMetrics(0, 0, 0, 0, 0, 0)), "lastmile_dispatch_offers_closed_total", "lastmile_dispatch_uploads_total", "lastmile_dispatch_route_breaker_state", "lastmile_dispatch_route_breaker_opens_total",
		"lastmile_dispatch_courier_woken_tasks_total",
		"lastmile_dispatch_account_sweeps_total", "lastmile_dispatch_account_sweep_couriers_total", "lastmile_dispatch_account_sweep_taken_total")
	if err != nil {
		t.Error(err)
	}
}

// sweepMetrics is the exposition of the account sweeps' metrics.
func sweepMetrics(sweeps, checked, barred, failed, offers, tasks int) string {
	return fmt.Sprintf(`# HELP lastmile_dispatch_account_sweeps_total Account sweeps this replica ran: checks of the couriers with open offers or tasks not picked up, for account changes the live path missed.
# TYPE lastmile_dispatch_account_sweeps_total counter
lastmile_dispatch_account_sweeps_total %d
# HELP lastmile_dispatch_account_sweep_couriers_total Couriers the account sweeps looked at, by outcome: checked (their account was read), barred (they may no longer work) or failed (the check, or the listing of the couriers, failed; left to the next sweep).
# TYPE lastmile_dispatch_account_sweep_couriers_total counter
lastmile_dispatch_account_sweep_couriers_total{outcome="barred"} %d
lastmile_dispatch_account_sweep_couriers_total{outcome="checked"} %d
lastmile_dispatch_account_sweep_couriers_total{outcome="failed"} %d
# HELP lastmile_dispatch_account_sweep_taken_total What the account sweeps took back from couriers who may no longer work, which the live path had missed: offer (withdrawn) or task (back to PENDING).
# TYPE lastmile_dispatch_account_sweep_taken_total counter
lastmile_dispatch_account_sweep_taken_total{what="offer"} %d
lastmile_dispatch_account_sweep_taken_total{what="task"} %d
`, sweeps, barred, checked, failed, offers, tasks)
}

// TestAccountSweepMetrics: each sweep adds to the sweeps' counters what it did.
func TestAccountSweepMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := grpcapi.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.AccountSwept(dispatch.AccountSweep{Checked: 5, Failed: 1, Barred: 2, Offers: 1, Tasks: 3})
	m.AccountSwept(dispatch.AccountSweep{Checked: 2})
	err = testutil.GatherAndCompare(reg, strings.NewReader(sweepMetrics(2, 7, 2, 1, 1, 3)),
		"lastmile_dispatch_account_sweeps_total", "lastmile_dispatch_account_sweep_couriers_total", "lastmile_dispatch_account_sweep_taken_total")
	if err != nil {
		t.Error(err)
	}
}

type counter struct {
	counts map[dispatch.State]int
	err    error
}

func (c counter) CountByState(context.Context) (map[dispatch.State]int, error) {
	return c.counts, c.err
}

func TestTaskStates(t *testing.T) {
	c := grpcapi.NewTaskStates(counter{counts: map[dispatch.State]int{dispatch.StatePending: 3, dispatch.StateDelivered: 7}}, 0, slog.New(slog.DiscardHandler))
	err := testutil.CollectAndCompare(c, strings.NewReader(`
# HELP lastmile_dispatch_tasks Tasks in each state, read from the store at scrape time.
# TYPE lastmile_dispatch_tasks gauge
lastmile_dispatch_tasks{state="assigned"} 0
lastmile_dispatch_tasks{state="cancelled"} 0
lastmile_dispatch_tasks{state="delivered"} 7
lastmile_dispatch_tasks{state="failed"} 0
lastmile_dispatch_tasks{state="offered"} 0
lastmile_dispatch_tasks{state="pending"} 3
lastmile_dispatch_tasks{state="picked_up"} 0
lastmile_dispatch_tasks{state="unassignable"} 0
`))
	if err != nil {
		t.Error(err)
	}
	broken := grpcapi.NewTaskStates(counter{err: errors.New("database down")}, time.Second, slog.New(slog.DiscardHandler))
	if n := testutil.CollectAndCount(broken); n != 0 {
		t.Errorf("series with the store failing = %d, want 0", n)
	}
}
