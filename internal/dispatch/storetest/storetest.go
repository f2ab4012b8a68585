// Package storetest is the conformance suite of the dispatch store (sqlstore.Store): package sqlite and
// package postgres run it on their engines, so both are held to exactly the same behaviour. It checks
// storage (what is written and read back, precision, ordering, locking under concurrency, that a
// closure's refusal writes nothing, the events and jobs written with each change); the business rules
// that run inside the closures are the domain's and are tested there, through the Service.
//
// Times go in with nanoseconds and in a zone other than UTC, and must come back truncated to the
// microsecond and in UTC: the suite compares them exactly, never approximately.
//
// The package also gives other tests a ready store (SQLite, Postgres) and the event log over it (Feed).
package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/sqlstore"
	"lastmile/internal/geo"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/database"
	"lastmile/internal/platform/eventlog"
	"lastmile/internal/platform/eventlog/sqllog"
	"lastmile/internal/platform/jobs"
)

// Run runs the conformance suite. newStore must return an empty store, migrated with everything
// (the engine package's Migrate: dispatch's tables, the event log, River's tables), without a job
// queue (the suite sets one), that lives until the test ends; every subtest gets its own.
func Run(t *testing.T, newStore func(t *testing.T) *sqlstore.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s *sqlstore.Store)
	}{
		{"CreateAndGet", testCreateAndGet},
		{"CreateDuplicateRequest", testCreateDuplicateRequest},
		{"CreateConcurrentDuplicates", testCreateConcurrentDuplicates},
		{"CreateIDConflict", testCreateIDConflict},
		{"CreateOpenQuota", testCreateOpenQuota},
		{"QuietChange", testQuietChange},
		{"TaskByOffer", testTaskByOffer},
		{"TaskHolder", testTaskHolder},
		{"ListTasks", testListTasks},
		{"ListTasksAnyHolder", testListTasksAnyHolder},
		{"CountTasks", testCountTasks},
		{"FinishedTasks", testFinishedTasks},
		{"UpdateTask", testUpdateTask},
		{"UpdateTaskNotFound", testUpdateTaskNotFound},
		{"UpdateTaskFailureWritesNothing", testUpdateTaskFailureWritesNothing},
		{"UpdateTaskConcurrentAccept", testUpdateTaskConcurrentAccept},
		{"UpdateTaskConcurrentNoLostUpdate", testUpdateTaskConcurrentNoLostUpdate},
		{"UpdateTasks", testUpdateTasks},
		{"UnleaseTasks", testUnleaseTasks},
		{"UnleaseOthers", testUnleaseOthers},
		{"Deliveries", testDeliveries},
		{"DeliveriesConcurrent", testDeliveriesConcurrent},
		{"Decisions", testDecisions},
		{"DecisionForms", testDecisionForms},
		{"Commands", testCommands},
		{"Jobs", testJobs},
		{"JobsWithoutQueue", testJobsWithoutQueue},
		{"LeaseDue", testLeaseDue},
		{"LeaseDueExclusive", testLeaseDueExclusive},
		{"WakePending", testWakePending},
		{"WakeNext", testWakeNext},
		{"WakeTasks", testWakeTasks},
		{"WaitingNear", testWaitingNear},
		{"QueueConcurrent", testQueueConcurrent},
		{"HeldAndOffered", testHeldAndOffered},
		{"CouriersWithWork", testCouriersWithWork},
		{"Sessions", testSessions},
		{"SessionsConcurrent", testSessionsConcurrent},
		{"AckSession", testAckSession},
		{"BeatSessions", testBeatSessions},
		{"DeliveriesWithTasks", testDeliveriesWithTasks},
		{"Purge", testPurge},
		{"Events", testEvents},
		{"ShareKeys", testShareKeys},
		{"ShareKeysConcurrent", testShareKeysConcurrent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			if tt.name != "JobsWithoutQueue" {
				s.SetJobs(sqlstore.RiverJobs(newJobs(t, s)))
			}
			tt.fn(t, s)
		})
	}
}

// newJobs returns an insert-only River client on s's database.
func newJobs(t testing.TB, s *sqlstore.Store) *jobs.Client {
	t.Helper()
	c, err := jobs.New(s.DB(), s.Dialect(), jobs.Options{})
	if err != nil {
		t.Fatalf("jobs.New: %v", err)
	}
	return c
}

// base is a whole hour in UTC; fixtures add minutes and nanoseconds to it.
var base = time.Date(2031, 3, 14, 9, 0, 0, 0, time.UTC)

// zone is where fixture times are expressed, so a store that does not convert to UTC fails.
var zone = time.FixedZone("UTC+05:30", 5*3600+30*60)

// cmpOpts compare times exactly, location included, and treat nil and empty slices alike.
var cmpOpts = []cmp.Option{
	cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) && a.Location() == b.Location() }),
	cmpopts.EquateEmpty(),
}

func taskID(n int) string    { return fmt.Sprintf("0190c000-0000-7000-8000-%012d", n) }
func courierID(n int) string { return fmt.Sprintf("0190a000-0000-7000-8000-%012d", n) }
func offerID(n int) string   { return fmt.Sprintf("0190d000-0000-7000-8000-%012d", n) }

// at returns base plus minutes and some nanoseconds, in zone.
func at(minutes int) time.Time {
	return base.Add(time.Duration(minutes)*time.Minute + 123_456_789).In(zone)
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC().Truncate(time.Microsecond)
}

// newTask returns a PENDING task n created at minute n, due then, with every field of a task set.
func newTask(n int) dispatch.Task {
	created := at(n)
	return dispatch.Task{
		ID:          taskID(n),
		CustomerID:  "customer-1",
		CreatedBy:   "customer-1",
		RequestID:   fmt.Sprintf("request-%d", n),
		RequestHash: "hash",
		State:       dispatch.StatePending,
		Pickup: dispatch.Stop{
			Location:     geo.LatLng{Lat: 52.520008123456789, Lng: 13.404954987654321},
			Address:      "Pickup street 1",
			Window:       &dispatch.Window{Start: created.Add(time.Hour + 1), End: created.Add(2*time.Hour + 999)},
			Contact:      dispatch.Contact{Name: "Ann", Phone: "+4930123"},
			Instructions: "ring twice",
		},
		Dropoff: dispatch.Stop{
			Location: geo.LatLng{Lat: 52.5, Lng: 13.4},
			Address:  "Dropoff street 2 — ünïcode",
		},
		Priority:          dispatch.PriorityNormal,
		Size:              dispatch.SizeMedium,
		Notes:             "fragile <glass> & \"care\"",
		ProofRequirements: []dispatch.ProofRequirement{{Kind: dispatch.ProofPhoto, Stage: dispatch.StageDropoff, Policy: dispatch.ProofRequired}},
		ParcelBarcode:     "BC-1",
		DeliveryCode:      "4711",
		History:           []dispatch.StateChange{{State: dispatch.StatePending, At: created, Actor: dispatch.ActorCustomer, ActorUserID: "customer-1"}},
		CreateTime:        created,
		UpdateTime:        created,
		Version:           7, // the store sets 1
		DueTime:           created,
		SearchStart:       created,
	}
}

// offer makes t OFFERED to courier c with offer o, at minute m.
func offer(t dispatch.Task, o, c, m int) dispatch.Task {
	t.State = dispatch.StateOffered
	t.Offers = append(t.Offers, dispatch.Offer{
		ID: offerID(o), TaskID: t.ID, CourierID: courierID(c), State: dispatch.OfferOpen,
		CreateTime: at(m), ExpireTime: at(m).Add(20 * time.Second), ResponseTimeout: 20 * time.Second,
		PickupETA: 7*time.Minute + 3*time.Millisecond, PickupDistance: 1234.5678901234, DecisionID: "decision-x",
	})
	t.DueTime = at(m).Add(20 * time.Second)
	t.UpdateTime = at(m)
	t.History = append(t.History, dispatch.StateChange{State: dispatch.StateOffered, At: at(m), Actor: dispatch.ActorSystem,
		CourierID: courierID(c), OfferID: offerID(o)})
	return t
}

// assign makes t ASSIGNED to courier c at minute m, accepting its open offer if it has one.
func assign(t dispatch.Task, c, m int) dispatch.Task {
	if o := t.CurrentOffer(); o != nil {
		o.State, o.AnswerTime = dispatch.OfferAccepted, at(m)
	}
	t.State, t.CourierID, t.AssignTime, t.UpdateTime, t.DueTime = dispatch.StateAssigned, courierID(c), at(m), at(m), time.Time{}
	return t
}

// testContext bounds every store call of a test, so a deadlock fails instead of hanging the run.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func wantCode(t *testing.T, call string, err error, want apperr.Code) {
	t.Helper()
	if got := apperr.CodeOf(err); got != want {
		t.Errorf("%s error = %v (code %q), want code %q", call, err, got, want)
	}
}

func mustCreate(ctx context.Context, t *testing.T, s dispatch.Store, task dispatch.Task) dispatch.Task {
	t.Helper()
	out, created, err := s.CreateTask(ctx, task)
	if err != nil || !created {
		t.Fatalf("CreateTask(%s) = created %v, %v, want true, nil", task.ID, created, err)
	}
	return out
}

func mustGet(ctx context.Context, t *testing.T, s dispatch.Store, id string) dispatch.Task {
	t.Helper()
	got, err := s.GetTask(ctx, id)
	if err != nil {
		t.Fatalf("GetTask(%s): %v", id, err)
	}
	return got
}

// set stores change(task) as task id's new value and returns the stored task.
func set(ctx context.Context, t *testing.T, s dispatch.Store, id string, change func(dispatch.Task) dispatch.Task) dispatch.Task {
	t.Helper()
	out, err := s.UpdateTask(ctx, id, func(cur dispatch.Task) (dispatch.Change, error) {
		return dispatch.Change{Task: change(cur)}, nil
	})
	if err != nil {
		t.Fatalf("UpdateTask(%s): %v", id, err)
	}
	return out
}

func ids(tasks []dispatch.Task) []string {
	out := make([]string, len(tasks))
	for i, t := range tasks {
		out[i] = t.ID
	}
	return out
}

// events returns every event of the store's log, in sequence order.
func events(ctx context.Context, t *testing.T, s *sqlstore.Store) []eventlog.Event {
	t.Helper()
	evs, _, err := sqllog.NewSource(s.DB(), s.Dialect()).Read(ctx, 0, 100_000)
	if err != nil {
		t.Fatalf("read event log: %v", err)
	}
	return evs
}

// event is what the suite compares of an event.
type event struct {
	Seq        int64
	Topic, Key string
	Payload    string
}

func eventsOf(evs []eventlog.Event, topics ...string) []event {
	var out []event
	for _, e := range evs {
		if len(topics) == 0 || slices.Contains(topics, e.Topic) {
			out = append(out, event{Seq: e.Seq, Topic: e.Topic, Key: e.Key, Payload: string(e.Payload)})
		}
	}
	return out
}

// riverJob is a job in River's table.
type riverJob struct {
	Kind string
	Args map[string]any
}

// riverJobs returns the jobs in River's table, in insertion order.
func riverJobs(ctx context.Context, t *testing.T, s *sqlstore.Store) []riverJob {
	t.Helper()
	args := "args"
	if s.Dialect() == database.SQLite {
		args = "json(args)" // River keeps SQLite's binary JSONB
	}
	rows, err := s.DB().QueryContext(ctx, `SELECT kind, `+args+` FROM river_job ORDER BY id`)
	if err != nil {
		t.Fatalf("read river_job: %v", err)
	}
	defer rows.Close()
	var out []riverJob
	for rows.Next() {
		var (
			j    riverJob
			args []byte
		)
		if err := rows.Scan(&j.Kind, &args); err != nil {
			t.Fatalf("read river_job: %v", err)
		}
		if err := json.Unmarshal(args, &j.Args); err != nil {
			t.Fatalf("decode river_job args %q: %v", args, err)
		}
		out = append(out, j)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read river_job: %v", err)
	}
	return out
}
