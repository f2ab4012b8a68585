package grpcapi

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/routeclient"
	"lastmile/internal/platform/telemetry"
)

// Metrics implements dispatch.Metrics with Prometheus: offers sent and answered, the time from a task's
// creation to its assignment, decision durations and outcomes, open courier sessions, replayed deliveries
// and proof uploads, the ends of the courier stream and the waiting tasks couriers woke, the account
// sweeps, and the state of the circuit breaker around the route service (routeclient.BreakerObserver). Build it with NewMetrics.
type Metrics struct {
	offersSent     prometheus.Counter
	offersAnswered *prometheus.CounterVec
	timeToAssign   prometheus.Histogram
	decisions      *prometheus.HistogramVec
	degraded       prometheus.Counter
	sessions       prometheus.Gauge
	replayed       prometheus.Counter
	uploads        *prometheus.CounterVec
	courierStream  prometheus.Counter
	courierWakes   *prometheus.CounterVec
	breakerState   prometheus.Gauge
	breakerOpens   prometheus.Counter
	sweeps         prometheus.Counter
	sweptCouriers  *prometheus.CounterVec
	sweptTaken     *prometheus.CounterVec
}

var _ routeclient.BreakerObserver = (*Metrics)(nil)

var _ dispatch.Metrics = (*Metrics)(nil)

// NewMetrics returns dispatch's metrics registered with reg (private ones with a nil reg).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	r := &registrar{reg: reg}
	m := &Metrics{
		offersSent: r.counter("lastmile_dispatch_offers_sent_total",
			"Offers made to couriers."),
		offersAnswered: r.counterVec("lastmile_dispatch_offers_closed_total",
			"Offers that left the open state, by outcome: accepted, declined, expired or withdrawn.", "outcome"),
		timeToAssign: register(r, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "lastmile_dispatch_time_to_assign_seconds",
			Help:    "Time from a task's creation to its assignment to a courier.",
			Buckets: []float64{1, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600},
		})),
		decisions: register(r, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "lastmile_dispatch_decision_duration_seconds",
			Help:    "Time the assignment engine took per decision, by outcome.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"outcome"})),
		degraded: r.counter("lastmile_dispatch_decisions_degraded_total",
			"Decisions made with the local ETA estimate because the route service was unavailable."),
		sessions: r.gauge("lastmile_dispatch_courier_sessions",
			"Courier sessions (StreamAssignments) open on this replica."),
		replayed: r.counter("lastmile_dispatch_replayed_deliveries_total",
			"Unacknowledged deliveries replayed to couriers when their session opened."),
		uploads: r.counterVec("lastmile_dispatch_uploads_total",
			"Proof uploads that reached a state: in_progress (started), committed, rejected or expired.", "state"),
		courierStream: r.counter("lastmile_dispatch_courier_stream_ends_total",
			"Ends of the courier service's stream of courier states this replica follows (opened again after)."),
		courierWakes: r.counterVec("lastmile_dispatch_courier_woken_tasks_total",
			"Waiting tasks made due at once by a courier near them: available, freed or moved.", "reason"),
		breakerState: r.gauge("lastmile_dispatch_route_breaker_state",
			"State of dispatch's circuit breaker around the route service: 0 closed, 1 half-open, 2 open (ETAs from the local estimate)."),
		breakerOpens: r.counter("lastmile_dispatch_route_breaker_opens_total",
			"How many times dispatch's circuit breaker around the route service opened."),
		sweeps: r.counter("lastmile_dispatch_account_sweeps_total",
			"Account sweeps this replica ran: checks of the couriers with open offers or tasks not picked up, for account changes the live path missed."),
		sweptCouriers: r.counterVec("lastmile_dispatch_account_sweep_couriers_total",
			"Couriers the account sweeps looked at, by outcome: checked (their account was read), barred (they may no longer work) or failed (the check, or the listing of the couriers, failed; left to the next sweep).", "outcome"),
		sweptTaken: r.counterVec("lastmile_dispatch_account_sweep_taken_total",
			"What the account sweeps took back from couriers who may no longer work, which the live path had missed: offer (withdrawn) or task (back to PENDING).", "what"),
	}
	if r.err != nil {
		return nil, fmt.Errorf("register dispatch metrics: %w", r.err)
	}
	// Every outcome and state is exported from the start, at 0: a series that appears only at its first
	// event leaves an operator's rate() or alert on it without data after each restart (an "expired" alert
	// would stay silent until the first expiry).
	for _, o := range []dispatch.OfferState{dispatch.OfferAccepted, dispatch.OfferDeclined, dispatch.OfferExpired, dispatch.OfferWithdrawn} {
		m.offersAnswered.WithLabelValues(string(o))
	}
	for _, st := range []dispatch.UploadState{dispatch.UploadInProgress, dispatch.UploadCommitted, dispatch.UploadRejected, dispatch.UploadExpired} {
		m.uploads.WithLabelValues(string(st))
	}
	for _, o := range []string{"checked", "barred", "failed"} {
		m.sweptCouriers.WithLabelValues(o)
	}
	for _, w := range []string{"offer", "task"} {
		m.sweptTaken.WithLabelValues(w)
	}
	for _, r := range []string{"available", "freed", "moved"} { // dispatch's wakeReason
		m.courierWakes.WithLabelValues(r)
	}
	return m, nil
}

// registrar registers NewMetrics' collectors with reg (telemetry.Register) until the first error, which it
// keeps in err; once it has failed it returns the collectors it is given unregistered.
type registrar struct {
	reg prometheus.Registerer
	err error
}

// register registers c with r.reg and returns the collector to use: c, or the one already registered under
// its name.
func register[C prometheus.Collector](r *registrar, c C) C {
	if r.err != nil {
		return c
	}
	got, err := telemetry.Register(r.reg, c)
	if err != nil {
		r.err = err
		return c
	}
	return got
}

func (r *registrar) counter(name, help string) prometheus.Counter {
	return register(r, prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help}))
}

func (r *registrar) counterVec(name, help, label string) *prometheus.CounterVec {
	return register(r, prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{label}))
}

func (r *registrar) gauge(name, help string) prometheus.Gauge {
	return register(r, prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help}))
}

// OfferSent implements dispatch.Metrics.
func (m *Metrics) OfferSent() { m.offersSent.Inc() }

// OfferAnswered implements dispatch.Metrics.
func (m *Metrics) OfferAnswered(outcome dispatch.OfferState) {
	m.offersAnswered.WithLabelValues(string(outcome)).Inc()
}

// Assigned implements dispatch.Metrics.
func (m *Metrics) Assigned(sinceCreate time.Duration) { m.timeToAssign.Observe(sinceCreate.Seconds()) }

// Decided implements dispatch.Metrics.
func (m *Metrics) Decided(d *dispatch.Decision) {
	m.decisions.WithLabelValues(string(d.Outcome)).Observe(d.Elapsed.Seconds())
	if d.Degraded {
		m.degraded.Inc()
	}
}

// SessionOpened implements dispatch.Metrics.
func (m *Metrics) SessionOpened() { m.sessions.Inc() }

// SessionClosed implements dispatch.Metrics.
func (m *Metrics) SessionClosed() { m.sessions.Dec() }

// Replayed implements dispatch.Metrics.
func (m *Metrics) Replayed(n int) { m.replayed.Add(float64(n)) }

// Upload implements dispatch.Metrics.
func (m *Metrics) Upload(state string) { m.uploads.WithLabelValues(state).Inc() }

// CourierStreamEnded implements dispatch.Metrics.
func (m *Metrics) CourierStreamEnded() { m.courierStream.Inc() }

// CourierWoke implements dispatch.Metrics.
func (m *Metrics) CourierWoke(reason string, tasks int) {
	m.courierWakes.WithLabelValues(reason).Add(float64(tasks))
}

// AccountSwept implements dispatch.Metrics.
func (m *Metrics) AccountSwept(sw dispatch.AccountSweep) {
	m.sweeps.Inc()
	m.sweptCouriers.WithLabelValues("checked").Add(float64(sw.Checked))
	m.sweptCouriers.WithLabelValues("barred").Add(float64(sw.Barred))
	m.sweptCouriers.WithLabelValues("failed").Add(float64(sw.Failed))
	m.sweptTaken.WithLabelValues("offer").Add(float64(sw.Offers))
	m.sweptTaken.WithLabelValues("task").Add(float64(sw.Tasks))
}

// breakerStates are the values of lastmile_dispatch_route_breaker_state, as the grpc clients' breaker
// gauge has them.
var breakerStates = map[string]float64{"closed": 0, "half-open": 1, "open": 2}

// RouteBreakerChanged implements routeclient.BreakerObserver.
func (m *Metrics) RouteBreakerChanged(to string) {
	v, ok := breakerStates[to]
	if !ok {
		return
	}
	m.breakerState.Set(v)
	if to == "open" {
		m.breakerOpens.Inc()
	}
}

// TaskCounter counts tasks by state; dispatch.Store implements it.
type TaskCounter interface {
	CountByState(ctx context.Context) (map[dispatch.State]int, error)
}

// TaskStates is a Prometheus collector of lastmile_dispatch_tasks{state}: the tasks in each state, read
// from the store on every scrape (bounded by a timeout, so that a slow database cannot hold the scrape
// up; a failed read reports nothing and logs why).
type TaskStates struct {
	store   TaskCounter
	timeout time.Duration
	logger  *slog.Logger
	desc    *prometheus.Desc
}

var _ prometheus.Collector = (*TaskStates)(nil)

// NewTaskStates returns the collector over store; timeout bounds one read (2 s when 0).
func NewTaskStates(store TaskCounter, timeout time.Duration, logger *slog.Logger) *TaskStates {
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &TaskStates{store: store, timeout: timeout, logger: logger, desc: prometheus.NewDesc(
		"lastmile_dispatch_tasks", "Tasks in each state, read from the store at scrape time.", []string{"state"}, nil)}
}

// Describe implements prometheus.Collector.
func (c *TaskStates) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector. Every state is reported, those without tasks as 0.
func (c *TaskStates) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	counts, err := c.store.CountByState(ctx)
	if err != nil {
		c.logger.Warn("dispatch: count tasks by state for metrics", "error", err)
		return
	}
	for _, s := range dispatch.States {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[s]), string(s))
	}
}
