package storetest

import (
	"context"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/sqlstore"
	"lastmile/internal/geo"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/database"
)

// formsDecision is a decision of task 1 with every field set, among them floats a text form could
// round (the shortest decimal that reads back, -0, a subnormal, the largest), negative numbers and
// strings escaped in JSON.
func formsDecision(id string) dispatch.Decision {
	return dispatch.Decision{
		ID: id, TaskID: taskID(1), DecideTime: at(3), Trigger: dispatch.TriggerRetry, Outcome: dispatch.OutcomeOffered,
		Degraded: true, ETAProvider: "geodesic", DegradationDetail: "route <unavailable> & \"slow\"",
		Weights: dispatch.Weights{ETA: 1, Distance: 0.25, Load: 0.5, Fairness: 0.2}, SearchRadius: 3000.5,
		Candidates: []dispatch.Candidate{
			{CourierID: courierID(1), Rank: 1, Mode: geo.Bicycle, Location: geo.LatLng{Lat: 52.55302272050232, Lng: math.Copysign(0, -1)},
				Score: &dispatch.Score{PickupETA: 16 * time.Second, PickupDistance: 159.19923061589168, HeldWork: 7 * time.Minute, ActiveTasks: 2,
					Capacity: 10, Idle: 30 * time.Minute, ETAScore: 0.974025974025974, DistanceScore: 5e-324, LoadScore: -0.5,
					FairnessScore: math.MaxFloat64, Total: 1.9114279057344044},
				OfferID: offerID(1), OfferState: dispatch.OfferDeclined, DeclineReason: dispatch.DeclineTooFar},
			{CourierID: courierID(2), Rank: 2, Mode: geo.Car, Location: geo.LatLng{Lat: -33.8688, Lng: 151.2093},
				Score: &dispatch.Score{PickupETA: -time.Nanosecond, PickupDistance: math.Copysign(0, -1), Total: 1e-7}},
			{CourierID: courierID(3), Excluded: dispatch.ExcludedStaleLocation, Mode: geo.Car, Location: geo.LatLng{Lat: 1, Lng: 2},
				Score: &dispatch.Score{}},
			{CourierID: "日本\u2028\x00\"\\", Excluded: dispatch.ExcludedNoCapacity},
		},
		Winner: courierID(1), Rationale: "earliest ETA to pickup (16s)\n\t<b>", Elapsed: 145783,
	}
}

// testDecisionForms: a decision reads back exactly as written (reflect.DeepEqual, so the answers built
// from it are the same), whether the store kept it in binary form (what it writes now), as a JSON
// document (a row written before the binary form, and what it writes for a decision the binary form
// declines), through UpdateTask and UpdateTasks alike; a decision no form can hold is Invalid.
func testDecisionForms(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	mustCreate(ctx, t, s, newTask(1))
	nul := s.Dialect() == database.Postgres // PostgreSQL refuses NUL in every text (Engine.RefuseNUL)
	stored := func(d dispatch.Decision) dispatch.Decision {
		d.DecideTime = utc(d.DecideTime)
		if nul {
			d.Candidates[3].CourierID = strings.ReplaceAll(d.Candidates[3].CourierID, "\x00", "")
		}
		return d
	}
	written := stored(formsDecision("written"))
	batch := stored(formsDecision("batch"))
	batch.DecideTime = utc(at(4))
	old := stored(formsDecision("old"))
	old.DecideTime = utc(at(2))
	notUTF8 := stored(formsDecision("not-utf8"))
	notUTF8.DecideTime, notUTF8.Rationale = utc(at(1)), "a\xffb"

	put := func(d dispatch.Decision) {
		t.Helper()
		if _, err := s.UpdateTask(ctx, taskID(1), func(cur dispatch.Task) (dispatch.Change, error) {
			return dispatch.Change{Task: cur, Decision: &d}, nil
		}); err != nil {
			t.Fatalf("UpdateTask(decision %s): %v", d.ID, err)
		}
	}
	put(written)
	put(notUTF8)
	if _, errs := s.UpdateTasks(ctx, []dispatch.TaskWrite{{ID: taskID(1), Fn: func(cur dispatch.Task) (dispatch.Change, error) {
		return dispatch.Change{Task: cur, Decision: &batch}, nil
	}}}); errs[0] != nil {
		t.Fatalf("UpdateTasks(decision %s): %v", batch.ID, errs[0])
	}
	insertDocDecision(ctx, t, s, old, true)

	// What is stored: the binary form, but for the decisions written as JSON.
	for id, wantBin := range map[string]bool{"written": true, "batch": true, "old": false, "not-utf8": false} {
		var hasBin bool
		var doc string
		if err := s.DB().QueryRowContext(ctx, `SELECT bin IS NOT NULL, doc FROM decisions WHERE id = $1`, id).Scan(&hasBin, &doc); err != nil {
			t.Fatalf("read decision %s's row: %v", id, err)
		}
		if hasBin != wantBin || (hasBin && doc != "null") || (!hasBin && !strings.HasPrefix(doc, `{"ID":`)) {
			t.Errorf("decision %s stored with bin %v and doc %.20q; want bin %v (doc null when set, a document otherwise)", id, hasBin, doc, wantBin)
		}
	}

	notUTF8.Rationale = "a\ufffdb" // as encoding/json has always stored it
	want := []dispatch.Decision{batch, written, old, notUTF8}
	got, err := s.Decisions(ctx, taskID(1), 10)
	if err != nil {
		t.Fatalf("Decisions: %v", err)
	}
	if !sameDecisions(got, want) {
		t.Errorf("Decisions =\n%#v\nwant\n%#v", got, want)
	}
	// The old row and the binary one read back alike, but for their ids and times.
	if len(got) == 4 {
		g := got[2]
		g.ID, g.DecideTime = got[1].ID, got[1].DecideTime
		if !sameDecisions([]dispatch.Decision{g}, got[1:2]) {
			t.Errorf("the decision read from its JSON document differs from the one read from its binary form:\n%#v\n%#v", g, got[1])
		}
	}

	// What JSON could not hold, the binary form does not either: Invalid, nothing written.
	for name, bad := range map[string]func(*dispatch.Decision){
		"NaN":      func(d *dispatch.Decision) { d.Candidates[0].Score.Total = math.NaN() },
		"infinity": func(d *dispatch.Decision) { d.SearchRadius = math.Inf(1) },
	} {
		d := formsDecision("bad-" + name)
		bad(&d)
		_, err := s.UpdateTask(ctx, taskID(1), func(cur dispatch.Task) (dispatch.Change, error) {
			return dispatch.Change{Task: cur, Decision: &d}, nil
		})
		wantCode(t, "UpdateTask(decision with "+name+")", err, apperr.Invalid)
	}
	if nul {
		d := formsDecision("bad-nul")
		_, err := s.UpdateTask(ctx, taskID(1), func(cur dispatch.Task) (dispatch.Change, error) {
			return dispatch.Change{Task: cur, Decision: &d}, nil
		})
		wantCode(t, "UpdateTask(decision with a NUL)", err, apperr.Invalid)
	}
	if got, err := s.Decisions(ctx, taskID(1), 10); err != nil || len(got) != 4 {
		t.Errorf("Decisions after the refused ones = %d decisions, %v; want 4", len(got), err)
	}
}

// sameDecisions reports whether a and b are equal (reflect.DeepEqual), and their floats bit for bit
// (DeepEqual takes -0 for 0; an answer's protobuf does not).
func sameDecisions(a, b []dispatch.Decision) bool {
	ja, erra := json.Marshal(a)
	jb, errb := json.Marshal(b)
	return reflect.DeepEqual(a, b) && erra == nil && errb == nil && string(ja) == string(jb)
}

// insertDocDecision inserts d as the store wrote decisions before their binary form: encoding/json in
// doc (with bin, NULL, when the column exists).
func insertDocDecision(ctx context.Context, t *testing.T, s *sqlstore.Store, d dispatch.Decision, withBin bool) {
	t.Helper()
	doc, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	q := `INSERT INTO decisions (id, task_id, decide_time, doc) VALUES ($1, $2, $3, $4)`
	if withBin {
		q = `INSERT INTO decisions (id, task_id, decide_time, doc, bin) VALUES ($1, $2, $3, $4, NULL)`
	}
	if _, err := s.DB().ExecContext(ctx, q, d.ID, d.TaskID, s.Dialect().Time(d.DecideTime), string(doc)); err != nil {
		t.Fatalf("insert decision %s as a document: %v", d.ID, err)
	}
}

// DecisionBinMigration checks the migration that adds the decisions' binary form: s is a store on a
// database migrated up to the migration before it, and migrate applies the rest. A decision written
// before reads back the same after it, beside one written after.
func DecisionBinMigration(t *testing.T, s *sqlstore.Store, migrate func(context.Context) error) {
	ctx := testContext(t)
	mustCreate(ctx, t, s, newTask(1))
	before := formsDecision("before")
	before.DecideTime = utc(before.DecideTime)
	if s.Dialect() == database.Postgres {
		before.Candidates[3].CourierID = "日本"
	}
	insertDocDecision(ctx, t, s, before, false)
	if err := migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	after := before
	after.ID, after.DecideTime = "after", utc(at(9))
	if _, err := s.UpdateTask(ctx, taskID(1), func(cur dispatch.Task) (dispatch.Change, error) {
		return dispatch.Change{Task: cur, Decision: &after}, nil
	}); err != nil {
		t.Fatalf("UpdateTask(decision after the migration): %v", err)
	}
	got, err := s.Decisions(ctx, taskID(1), 10)
	if want := []dispatch.Decision{after, before}; err != nil || !sameDecisions(got, want) {
		t.Errorf("Decisions after the migration = %v\n%#v\nwant\n%#v", err, got, want)
	}
	var n int
	if err := s.DB().QueryRowContext(ctx, `SELECT count(*) FROM decisions WHERE bin IS NOT NULL`).Scan(&n); err != nil || n != 1 {
		t.Errorf("decisions in binary form = %d, %v; want 1 (the one written after the migration)", n, err)
	}
}
