package grpcapi_test

import (
	"context"
	"encoding/json"
	"math"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/dispatchtest"
	"lastmile/internal/geo"
)

// TestExplainAssignmentSameFromEitherForm: ExplainAssignment answers the same bytes whether the store
// kept the task's decisions in their binary form (what it writes now) or as the JSON documents it wrote
// before.
func TestExplainAssignmentSameFromEitherForm(t *testing.T) {
	e := start(t, false)
	task := e.create(t, customer, "r1")
	c := e.sys.AddCourier(t, dispatchtest.Berlin, geo.Bicycle, false)
	// A decision with every field set, floats a text could round among them, and one of excluded
	// candidates only.
	rich := dispatch.Decision{
		ID: "0190e000-0000-7000-8000-000000000001", TaskID: task.GetId(), DecideTime: time.Date(2031, 3, 14, 9, 0, 1, 234567000, time.UTC),
		Trigger: dispatch.TriggerRetry, Outcome: dispatch.OutcomeOffered, Degraded: true, ETAProvider: "geodesic",
		DegradationDetail: "route <unavailable>", Weights: dispatch.DefaultWeights, SearchRadius: 3000.5,
		Candidates: []dispatch.Candidate{
			{CourierID: c.ID, Rank: 1, Mode: geo.Bicycle, Location: geo.LatLng{Lat: 52.55302272050232, Lng: math.Copysign(0, -1)},
				Score: &dispatch.Score{PickupETA: 16 * time.Second, PickupDistance: 159.19923061589168, HeldWork: time.Minute, ActiveTasks: 2,
					Capacity: 10, Idle: 30 * time.Minute, ETAScore: 0.974025974025974, DistanceScore: 5e-324, LoadScore: 0.5,
					FairnessScore: math.MaxFloat64, Total: 1.9114279057344044},
				OfferID: "0190d000-0000-7000-8000-000000000001", OfferState: dispatch.OfferDeclined, DeclineReason: dispatch.DeclineTooFar},
			{CourierID: "日本\u2028\"\\", Excluded: dispatch.ExcludedStaleLocation, Mode: geo.Car, Location: geo.LatLng{Lat: -33.8688, Lng: 151.2093}},
		},
		Winner: c.ID, Rationale: "earliest ETA to pickup (16s)\n<b>", Elapsed: 145783,
	}
	excluded := dispatch.Decision{
		ID: "0190e000-0000-7000-8000-000000000002", TaskID: task.GetId(), DecideTime: time.Date(2031, 3, 14, 9, 0, 0, 0, time.UTC),
		Trigger: dispatch.TriggerAutomatic, Outcome: dispatch.OutcomeAllExcluded, ETAProvider: "route", Weights: dispatch.DefaultWeights,
		SearchRadius: 3000, Candidates: []dispatch.Candidate{{CourierID: c.ID, Excluded: dispatch.ExcludedNotConnected, Mode: geo.Bicycle,
			Location: dispatchtest.Berlin}},
		Rationale: "no eligible courier",
	}
	decisions := []dispatch.Decision{rich, excluded}
	ctx := context.Background()
	for _, d := range decisions {
		if _, err := e.sys.Store.UpdateTask(ctx, task.GetId(), func(cur dispatch.Task) (dispatch.Change, error) {
			return dispatch.Change{Task: cur, Decision: &d}, nil
		}); err != nil {
			t.Fatalf("UpdateTask(decision %s): %v", d.ID, err)
		}
	}
	explain := func() []byte {
		t.Helper()
		ex, err := e.client.ExplainAssignment(callCtx(t, dispatcher), &dispatchv1.ExplainAssignmentRequest{Id: task.GetId()})
		if err != nil || len(ex.GetDecisions()) != 2 {
			t.Fatalf("ExplainAssignment = %v, %v; want two decisions", ex, err)
		}
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(ex)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	db := e.sys.Store.DB()
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM decisions WHERE bin IS NOT NULL`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("decisions in binary form = %d, %v; want 2", n, err)
	}
	fromBin := explain()

	// The same decisions as the store wrote them before: encoding/json in doc, no bin.
	for _, d := range decisions {
		doc, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, `UPDATE decisions SET doc = $1, bin = NULL WHERE id = $2`, string(doc), d.ID); err != nil {
			t.Fatalf("rewrite decision %s as a document: %v", d.ID, err)
		}
	}
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM decisions WHERE bin IS NULL`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("decisions as documents = %d, %v; want 2", n, err)
	}
	if fromDoc := explain(); string(fromDoc) != string(fromBin) {
		t.Errorf("ExplainAssignment from the documents differs from the one from the binary forms:\n%x\n%x", fromDoc, fromBin)
	}
}
