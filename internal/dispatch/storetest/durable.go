package storetest

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/sqlstore"
)

// RunDurable checks that everything a store keeps survives closing and reopening it. open returns an
// empty store (migrated, as Run's) and a function that closes that store and opens the same database
// again (migrations included), as a restarted process would.
func RunDurable(t *testing.T, open func(t *testing.T) (s *sqlstore.Store, reopen func() *sqlstore.Store)) {
	ctx := testContext(t)
	s, reopen := open(t)
	s.SetJobs(sqlstore.RiverJobs(newJobs(t, s)))
	mustCreate(ctx, t, s, offer(newTask(1), 1, 1, 1))
	decision := dispatch.Decision{ID: "decision-1", TaskID: taskID(1), DecideTime: at(2), Outcome: dispatch.OutcomeOffered, Winner: courierID(1)}
	rec := dispatch.CommandRecord{CourierID: courierID(1), CommandID: "cmd-1", Fingerprint: "fp", TaskID: taskID(1), CreateTime: at(2)}
	task, err := s.UpdateTask(ctx, taskID(1), func(cur dispatch.Task) (dispatch.Change, error) {
		return dispatch.Change{
			Task:       assign(cur, 1, 2),
			Deliveries: []dispatch.Delivery{{CourierID: courierID(1), Kind: dispatch.DeliveryTask, TaskID: cur.ID, Reason: dispatch.NoticeAssigned, CreateTime: at(2)}},
			Decision:   &decision,
			Command:    &rec,
			Jobs:       []dispatch.Job{{Kind: dispatch.JobClaim, CourierID: courierID(1), TaskID: cur.ID, ExpectedRelease: at(60)}},
		}, nil
	})
	if err != nil {
		t.Fatalf("UpdateTask: %v", err)
	}
	session := dispatch.Session{SessionID: "s1", Epoch: 9, Acked: 0, Replica: "r1", Heartbeat: at(3), Open: true, AppVersion: "1.0", Capabilities: []string{"photo"}}
	if _, err := s.UpdateSession(ctx, courierID(1), func(dispatch.Session) (dispatch.Session, error) { return session, nil }); err != nil {
		t.Fatalf("UpdateSession: %v", err)
	}
	deliveries, err := s.Deliveries(ctx, courierID(1), 0, 10)
	if err != nil {
		t.Fatalf("Deliveries: %v", err)
	}
	evs := eventsOf(events(ctx, t, s))
	jobs := riverJobs(ctx, t, s)

	s = reopen()

	if diff := cmp.Diff(task, mustGet(ctx, t, s, taskID(1)), cmpOpts...); diff != "" {
		t.Errorf("GetTask after reopening (-want +got):\n%s", diff)
	}
	if got, err := s.TaskByOffer(ctx, offerID(1)); err != nil || got.ID != taskID(1) {
		t.Errorf("TaskByOffer after reopening = %s, %v", got.ID, err)
	}
	decision.DecideTime = utc(decision.DecideTime)
	if got, err := s.Decisions(ctx, taskID(1), 10); err != nil || !cmp.Equal([]dispatch.Decision{decision}, got, cmpOpts...) {
		t.Errorf("Decisions after reopening = %+v, %v", got, err)
	}
	rec.CreateTime = utc(rec.CreateTime)
	if got, found, err := s.Command(ctx, rec.CourierID, rec.CommandID); err != nil || !found || !cmp.Equal(rec, got, cmpOpts...) {
		t.Errorf("Command after reopening = %+v, %v, %v", got, found, err)
	}
	if got, err := s.Deliveries(ctx, courierID(1), 0, 10); err != nil || !cmp.Equal(deliveries, got, cmpOpts...) {
		t.Errorf("Deliveries after reopening = %+v, %v, want %+v", got, err, deliveries)
	}
	session.CourierID, session.Heartbeat = courierID(1), utc(session.Heartbeat)
	if got, err := s.GetSession(ctx, courierID(1)); err != nil || !cmp.Equal(session, got, cmpOpts...) {
		t.Errorf("GetSession after reopening = %+v, %v, want %+v", got, err, session)
	}
	if diff := cmp.Diff(evs, eventsOf(events(ctx, t, s))); diff != "" {
		t.Errorf("events after reopening (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(jobs, riverJobs(ctx, t, s)); diff != "" {
		t.Errorf("jobs after reopening (-want +got):\n%s", diff)
	}
	// Cursors keep increasing across the restart.
	if _, err := s.UpdateTask(ctx, taskID(1), func(cur dispatch.Task) (dispatch.Change, error) {
		return dispatch.Change{Task: cur, Deliveries: []dispatch.Delivery{{CourierID: courierID(1), Kind: dispatch.DeliveryTask, TaskID: cur.ID,
			Reason: dispatch.NoticeUpdated, CreateTime: at(4)}}}, nil
	}); err != nil {
		t.Fatalf("UpdateTask after reopening: %v", err)
	}
	if got, err := s.LastCursor(ctx, courierID(1)); err != nil || got <= deliveries[0].Cursor {
		t.Errorf("LastCursor after a delivery after reopening = %d, %v, want above %d", got, err, deliveries[0].Cursor)
	}
}
