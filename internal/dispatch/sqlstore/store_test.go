package sqlstore_test

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/sqlite"
	"lastmile/internal/dispatch/sqlstore"
	"lastmile/internal/geo"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/database"
	"lastmile/internal/platform/database/databasetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// errRetry stands for PostgreSQL's deadlock_detected: an engine may report it as retryable.
var errRetry = errors.New("deadlock detected")

// newStore returns a store on SQLite whose engine reports errRetry as retryable, so that the retry loop
// PostgreSQL needs can be driven deterministically.
func newStore(t *testing.T) *sqlstore.Store {
	t.Helper()
	db := databasetest.MigratedSQLite(t, "dispatch", sqlite.Migrate)
	return sqlstore.New(db, sqlstore.Engine{
		Dialect:   database.SQLite,
		MapError:  database.Constraints{}.MapSQLite,
		Retryable: func(err error) bool { return errors.Is(err, errRetry) },
	}, nil)
}

func newTask() dispatch.Task {
	now := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	return dispatch.Task{ID: "t1", CreatedBy: "u1", RequestID: "r1", CustomerID: "u1", State: dispatch.StatePending, Priority: dispatch.PriorityNormal,
		CreateTime: now, UpdateTime: now, DueTime: now}
}

// TestUpdateTaskRetries: a transaction that fails with a retryable error runs again from the start,
// closure included, and its second run is what is written.
func TestUpdateTaskRetries(t *testing.T) {
	ctx := t.Context()
	s := newStore(t)
	nudges := 0
	s.SetNudge(func() { nudges++ })
	if _, _, err := s.CreateTask(ctx, newTask()); err != nil {
		t.Fatal(err)
	}
	runs := 0
	out, err := s.UpdateTask(ctx, "t1", func(cur dispatch.Task) (dispatch.Change, error) {
		runs++
		if runs == 1 {
			return dispatch.Change{}, errRetry
		}
		cur.Searches = runs
		return dispatch.Change{Task: cur}, nil
	})
	if err != nil || runs != 2 || out.Searches != 2 || out.Version != 2 {
		t.Errorf("UpdateTask = searches %d version %d, %v after %d runs; want 2, 2, nil after 2 runs", out.Searches, out.Version, err, runs)
	}
	if nudges != 2 {
		t.Errorf("nudges = %d, want 2 (the create and the committed update)", nudges)
	}
}

// TestUpdateTaskRetriesBounded: a transaction that keeps failing is given up after a few runs, as
// Aborted, and a failure that is not retryable is returned at once.
func TestUpdateTaskRetriesBounded(t *testing.T) {
	ctx := t.Context()
	s := newStore(t)
	if _, _, err := s.CreateTask(ctx, newTask()); err != nil {
		t.Fatal(err)
	}
	runs := 0
	_, err := s.UpdateTask(ctx, "t1", func(dispatch.Task) (dispatch.Change, error) {
		runs++
		return dispatch.Change{}, errRetry
	})
	if apperr.CodeOf(err) != apperr.Aborted || !errors.Is(err, errRetry) || runs != 5 {
		t.Errorf("UpdateTask(always retryable) = %v (code %q) after %d runs, want Aborted wrapping the cause after 5", err, apperr.CodeOf(err), runs)
	}
	runs = 0
	refused := apperr.Errorf(apperr.FailedPrecondition, "no")
	_, err = s.UpdateTask(ctx, "t1", func(dispatch.Task) (dispatch.Change, error) {
		runs++
		return dispatch.Change{}, refused
	})
	if !errors.Is(err, refused) || runs != 1 {
		t.Errorf("UpdateTask(refused) = %v after %d runs, want the refusal after 1", err, runs)
	}
}

// TestNudge: the nudge runs after commits that appended events, never after a failed change or one that
// appends nothing.
func TestNudge(t *testing.T) {
	ctx := t.Context()
	s := newStore(t)
	nudges := 0
	s.SetNudge(func() { nudges++ })
	if _, _, err := s.CreateTask(ctx, newTask()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CreateTask(ctx, newTask()); err != nil { // the same request: nothing written
		t.Fatal(err)
	}
	if _, err := s.UpdateTask(ctx, "t1", func(dispatch.Task) (dispatch.Change, error) {
		return dispatch.Change{}, apperr.Errorf(apperr.FailedPrecondition, "no")
	}); apperr.CodeOf(err) != apperr.FailedPrecondition {
		t.Fatalf("UpdateTask(refused) = %v", err)
	}
	if _, err := s.UpdateSession(ctx, "c1", func(cur dispatch.Session) (dispatch.Session, error) {
		cur.Acked = 3 // same session id: no event
		return cur, nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LeaseDue(ctx, "r1", time.Date(2032, 1, 1, 0, 0, 0, 0, time.UTC), time.Minute, 10); err != nil {
		t.Fatal(err)
	}
	if nudges != 1 {
		t.Errorf("nudges = %d, want 1 (the first create only)", nudges)
	}
	if _, err := s.UpdateSession(ctx, "c1", func(cur dispatch.Session) (dispatch.Session, error) {
		cur.SessionID = "s1"
		return cur, nil
	}); err != nil {
		t.Fatal(err)
	}
	if nudges != 2 {
		t.Errorf("nudges after a new session = %d, want 2", nudges)
	}
}

// fullTask is a task with every field set, times in other zones and below the microsecond included.
func fullTask() dispatch.Task {
	berlin := time.FixedZone("CET", 3600)
	at := func(s int) time.Time { return time.Date(2031, 1, 2, 3, 4, s, 123456789, berlin) }
	window := func(s int) *dispatch.Window { return &dispatch.Window{Start: at(s), End: at(s + 1)} }
	return dispatch.Task{
		ID: "t1", CustomerID: "u1", CreatedBy: "u1", RequestID: "r1", RequestHash: "h1",
		State:     dispatch.StateOffered,
		CourierID: "c0",
		Pickup: dispatch.Stop{Location: geo.LatLng{Lat: 52.52, Lng: 13.405}, Address: "A <&> \u2028 \u00e9", Window: window(1),
			Contact: dispatch.Contact{Name: "Ada", Phone: "+4915112345678"}, Instructions: "ring \"twice\"\n"},
		Dropoff: dispatch.Stop{Location: geo.LatLng{Lat: -0.000001, Lng: 1e-7}, Address: "B \ufffd", Window: window(3),
			Contact: dispatch.Contact{Name: "Bo", Phone: "+1"}, Instructions: "\\u0041"},
		Priority: dispatch.PriorityUrgent, Size: dispatch.SizeLarge, Notes: "\x01\t",
		ProofRequirements: []dispatch.ProofRequirement{{Kind: dispatch.ProofPhoto, Stage: dispatch.StageDropoff, Policy: dispatch.ProofRequired}},
		ParcelBarcode:     "123", DeliveryCode: "9876",
		Offers: []dispatch.Offer{
			{ID: "o0", TaskID: "t1", CourierID: "c0", State: dispatch.OfferDeclined, CreateTime: at(5), ExpireTime: at(25), ResponseTimeout: 20 * time.Second,
				PickupETA: 90 * time.Second, PickupDistance: 1234.5678901234567, DecisionID: "d0", AnswerTime: at(6), DeclineReason: dispatch.DeclineTooFar, Comment: "far"},
			{ID: "o1", TaskID: "t1", CourierID: "c1", State: dispatch.OfferOpen, CreateTime: at(7), ExpireTime: at(27), ResponseTimeout: 20 * time.Second,
				PickupETA: time.Nanosecond, PickupDistance: 1e300, DecisionID: "d1"},
		},
		Proofs: []dispatch.Proof{{UploadID: "up1", Kind: dispatch.ProofPhoto, Stage: dispatch.StagePickup, ContentType: "image/jpeg", SizeBytes: 1 << 40,
			SHA256: "ab", Value: "v", SignerName: "S", CaptureTime: at(8), CaptureLocation: &geo.LatLng{Lat: 1, Lng: 2}, CreateTime: at(9)}},
		Excluded:      []dispatch.Exclusion{{CourierID: "c0", Reason: dispatch.ExcludedDeclined}},
		CancelReason:  dispatch.CancelOther,
		FailureReason: dispatch.FailureOther,
		History: []dispatch.StateChange{{State: dispatch.StatePending, At: at(0), Actor: dispatch.ActorCustomer, ActorUserID: "u1",
			CourierID: "c0", OfferID: "o0", Comment: "c"}},
		CreateTime: at(0), UpdateTime: at(7), AssignTime: at(10), PickupTime: at(11), DeliverTime: at(12), FinishTime: at(13),
		Version: 1, DueTime: at(30), SearchStart: at(0), Searches: 2, CodeAttempts: 1,
	}
}

// TestTaskDocs: what a write returns, what a read of the same store returns (from the documents it
// decoded or wrote before) and what a read of another store on the same database returns (decoded
// afresh) are equal; a string that is not UTF-8 reads back as the decoder makes it, whichever store
// reads; and changing a task read changes nothing of the next read.
func TestTaskDocs(t *testing.T) {
	ctx := t.Context()
	s := newStore(t)
	task := fullTask()
	if v := reflect.ValueOf(task); true {
		for i := range v.NumField() {
			if v.Field(i).IsZero() {
				t.Fatalf("fullTask leaves %s zero: set it, so that its round trip through the store is checked", v.Type().Field(i).Name)
			}
		}
	}
	fresh := func() *sqlstore.Store {
		return sqlstore.New(s.DB(), sqlstore.Engine{Dialect: database.SQLite, MapError: database.Constraints{}.MapSQLite}, nil)
	}
	check := func(what string, want dispatch.Task) {
		t.Helper()
		for name, st := range map[string]*sqlstore.Store{"same store": s, "fresh store": fresh()} {
			got, err := st.GetTask(ctx, want.ID)
			if err != nil {
				t.Fatalf("%s: GetTask(%q) on the %s: %v", what, want.ID, name, err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s: GetTask(%q) on the %s differs from the task written (-written +read):\n%s", what, want.ID, name, diff)
			}
		}
	}
	created, _, err := s.CreateTask(ctx, task)
	if err != nil {
		t.Fatal(err)
	}
	check("after CreateTask", created)
	updated, err := s.UpdateTask(ctx, task.ID, func(cur dispatch.Task) (dispatch.Change, error) {
		cur.Searches++
		return dispatch.Change{Task: cur}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	check("after UpdateTask", updated)
	got, err := s.GetTask(ctx, task.ID)
	if err != nil {
		t.Fatal(err)
	}
	got.Offers[0].State, got.Proofs[0].CaptureLocation.Lat, got.Pickup.Window.Start = dispatch.OfferExpired, 7, time.Time{}
	check("after changing a task read", updated)

	updated, err = s.UpdateTask(ctx, task.ID, func(cur dispatch.Task) (dispatch.Change, error) {
		cur.Notes = "not \xff UTF-8"
		return dispatch.Change{Task: cur}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	updated.Notes = "not \ufffd UTF-8"
	check("after writing a string that is not UTF-8", updated)
}
