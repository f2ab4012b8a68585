package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/sqlstore"
	"lastmile/internal/platform/apperr"
)

func testSessions(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	c1 := courierID(1)
	got, err := s.GetSession(ctx, c1)
	if err != nil || !cmp.Equal(dispatch.Session{CourierID: c1}, got, cmpOpts...) {
		t.Errorf("GetSession(none) = %+v, %v, want the zero session of %s", got, err, c1)
	}
	// A failing closure creates nothing.
	refused := errors.New("refused")
	_, err = s.UpdateSession(ctx, c1, func(cur dispatch.Session) (dispatch.Session, error) {
		cur.SessionID = "s0"
		return cur, refused
	})
	if !errors.Is(err, refused) {
		t.Errorf("UpdateSession(failing) error = %v, want the closure's", err)
	}
	if evs := eventsOf(events(ctx, t, s), dispatch.TopicSession); len(evs) != 0 {
		t.Errorf("session events after a failed update = %v, want none", evs)
	}

	hb := at(1).Add(321)
	open := dispatch.Session{CourierID: "ignored", SessionID: "s1", Epoch: 77, Acked: 0, Replica: "r1", Heartbeat: hb, Open: true,
		AppVersion: "2.4.1", Capabilities: []string{"photo", "signature"}}
	var seen dispatch.Session
	out, err := s.UpdateSession(ctx, c1, func(cur dispatch.Session) (dispatch.Session, error) {
		seen = cur
		return open, nil
	})
	if err != nil {
		t.Fatalf("UpdateSession(open): %v", err)
	}
	if !cmp.Equal(dispatch.Session{CourierID: c1}, seen, cmpOpts...) {
		t.Errorf("UpdateSession closure got %+v, want the zero session of %s", seen, c1)
	}
	want := open
	want.CourierID, want.Heartbeat = c1, utc(hb)
	if diff := cmp.Diff(want, out, cmpOpts...); diff != "" {
		t.Errorf("UpdateSession result (-want +got):\n%s", diff)
	}
	got, err = s.GetSession(ctx, c1)
	if diff := cmp.Diff(want, got, cmpOpts...); err != nil || diff != "" {
		t.Errorf("GetSession error %v (-want +got):\n%s", err, diff)
	}
	// Acknowledging keeps the session id: no event. A new session id appends one.
	if _, err := s.UpdateSession(ctx, c1, func(cur dispatch.Session) (dispatch.Session, error) {
		cur.Acked = 5
		return cur, nil
	}); err != nil {
		t.Fatalf("UpdateSession(ack): %v", err)
	}
	if _, err := s.UpdateSession(ctx, c1, func(cur dispatch.Session) (dispatch.Session, error) {
		cur.SessionID, cur.Capabilities = "s2", nil
		return cur, nil
	}); err != nil {
		t.Fatalf("UpdateSession(replace): %v", err)
	}
	evs := eventsOf(events(ctx, t, s), dispatch.TopicSession)
	if len(evs) != 2 || evs[0].Key != c1 || evs[0].Payload != "s1" || evs[1].Key != c1 || evs[1].Payload != "s2" {
		t.Errorf("session events = %+v, want s1 then s2, keyed by %s", evs, c1)
	}
	got, err = s.GetSession(ctx, c1)
	want.SessionID, want.Acked, want.Capabilities = "s2", 5, nil
	if diff := cmp.Diff(want, got, cmpOpts...); err != nil || diff != "" {
		t.Errorf("GetSession after updates error %v (-want +got):\n%s", err, diff)
	}
	if c, err := s.LastCursor(ctx, c1); err != nil || c != 5 {
		t.Errorf("LastCursor(acked 5, no deliveries) = %d, %v, want 5", c, err)
	}

	// Connected: open with a heartbeat after since.
	for n, sess := range map[int]dispatch.Session{
		2: {SessionID: "x", Open: true, Heartbeat: at(5)},
		3: {SessionID: "y", Open: false, Heartbeat: at(5)},
		4: {SessionID: "z", Open: true, Heartbeat: at(0)},
		5: {SessionID: "w", Open: true},
	} {
		if _, err := s.UpdateSession(ctx, courierID(n), func(dispatch.Session) (dispatch.Session, error) { return sess, nil }); err != nil {
			t.Fatalf("UpdateSession(courier %d): %v", n, err)
		}
	}
	var all []string
	for n := 1; n <= 6; n++ {
		all = append(all, courierID(n))
	}
	conn, err := s.Connected(ctx, all, at(0))
	if wantConn := map[string]bool{c1: true, courierID(2): true}; err != nil || !cmp.Equal(wantConn, conn) {
		t.Errorf("Connected(since minute 0) = %v, %v, want %v", conn, err, wantConn)
	}
	conn, err = s.Connected(ctx, all, at(2))
	if wantConn := map[string]bool{courierID(2): true}; err != nil || !cmp.Equal(wantConn, conn) {
		t.Errorf("Connected(since minute 2) = %v, %v, want %v", conn, err, wantConn)
	}
	if conn, err := s.Connected(ctx, nil, at(0)); err != nil || len(conn) != 0 {
		t.Errorf("Connected(none) = %v, %v, want empty", conn, err)
	}
}

// testSessionsConcurrent: concurrent updates of a courier's session, the first of which creates it, are
// never lost.
func testSessionsConcurrent(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	const n = 10
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = s.UpdateSession(ctx, courierID(1), func(cur dispatch.Session) (dispatch.Session, error) {
				cur.Acked++
				return cur, nil
			})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent UpdateSession: %v", err)
	}
	if got, err := s.GetSession(ctx, courierID(1)); err != nil || got.Acked != n {
		t.Errorf("GetSession after %d concurrent increments = acked %d, %v, want %d", n, got.Acked, err, n)
	}
}

func testPurge(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	mustCreate(ctx, t, s, newTask(1))
	// Courier 1: deliveries at minutes 1, 2, 3, 4; acknowledged through the second. Courier 2: one at
	// minute 1, nothing acknowledged, no session.
	var ds []dispatch.Delivery
	for m := 1; m <= 4; m++ {
		ds = append(ds, dispatch.Delivery{CourierID: courierID(1), Kind: dispatch.DeliveryTask, TaskID: taskID(1), Reason: dispatch.NoticeUpdated, CreateTime: at(m)})
	}
	ds = append(ds, dispatch.Delivery{CourierID: courierID(2), Kind: dispatch.DeliveryTask, TaskID: taskID(1), Reason: dispatch.NoticeUpdated, CreateTime: at(1)})
	if _, err := s.UpdateTask(ctx, taskID(1), func(cur dispatch.Task) (dispatch.Change, error) {
		return dispatch.Change{Task: cur, Deliveries: ds}, nil
	}); err != nil {
		t.Fatalf("UpdateTask(deliveries): %v", err)
	}
	mine, err := s.Deliveries(ctx, courierID(1), 0, 10)
	if err != nil || len(mine) != 4 {
		t.Fatalf("Deliveries = %d, %v, want 4", len(mine), err)
	}
	if _, err := s.UpdateSession(ctx, courierID(1), func(cur dispatch.Session) (dispatch.Session, error) {
		cur.SessionID, cur.Acked = "s1", mine[1].Cursor
		return cur, nil
	}); err != nil {
		t.Fatalf("UpdateSession: %v", err)
	}
	for m := 1; m <= 3; m++ {
		rec := dispatch.CommandRecord{CourierID: courierID(1), CommandID: string(rune('a' + m)), CreateTime: at(m)}
		if err := s.SaveCommand(ctx, rec); err != nil {
			t.Fatalf("SaveCommand: %v", err)
		}
	}
	// Before minute 3 (exactly): delivery 3 of courier 1 and command 3 stay; delivery 4 stays.
	n, err := s.Purge(ctx, at(3))
	// Deleted: courier 1's first two (acknowledged), courier 2's (old), commands b and c (old).
	if err != nil || n != 5 {
		t.Errorf("Purge = %d, %v, want 5", n, err)
	}
	left, err := s.Deliveries(ctx, courierID(1), 0, 10)
	if diff := cmp.Diff(mine[2:], left, cmpOpts...); err != nil || diff != "" {
		t.Errorf("Deliveries(courier 1) after Purge error %v (-want +got):\n%s", err, diff)
	}
	if left, err := s.Deliveries(ctx, courierID(2), 0, 10); err != nil || len(left) != 0 {
		t.Errorf("Deliveries(courier 2) after Purge = %v, %v, want none", left, err)
	}
	for m, want := range map[int]bool{1: false, 2: false, 3: true} {
		if _, found, err := s.Command(ctx, courierID(1), string(rune('a'+m))); err != nil || found != want {
			t.Errorf("Command(minute %d) after Purge = found %v, %v, want %v", m, found, err, want)
		}
	}
	if c, err := s.LastCursor(ctx, courierID(1)); err != nil || c != mine[3].Cursor {
		t.Errorf("LastCursor after Purge = %d, %v, want %d", c, err, mine[3].Cursor)
	}
	if n, err := s.Purge(ctx, at(3)); err != nil || n != 0 {
		t.Errorf("second Purge = %d, %v, want 0", n, err)
	}
	// Tasks and their request ids are kept.
	dup := newTask(2)
	dup.RequestID = newTask(1).RequestID
	if out, created, err := s.CreateTask(ctx, dup); err != nil || created || out.ID != taskID(1) {
		t.Errorf("CreateTask(same request) after Purge = %s created %v, %v, want %s not created", out.ID, created, err, taskID(1))
	}
}

func testEvents(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	mustCreate(ctx, t, s, newTask(1))
	dup := newTask(2)
	dup.RequestID = newTask(1).RequestID
	if _, created, err := s.CreateTask(ctx, dup); err != nil || created {
		t.Fatalf("CreateTask(duplicate) = created %v, %v", created, err)
	}
	if _, err := s.UpdateTask(ctx, taskID(1), func(cur dispatch.Task) (dispatch.Change, error) {
		cur = offer(cur, 1, 1, 2)
		return dispatch.Change{Task: cur, Deliveries: []dispatch.Delivery{
			{CourierID: courierID(1), Kind: dispatch.DeliveryOffer, TaskID: cur.ID, OfferID: offerID(1)},
		}}, nil
	}); err != nil {
		t.Fatalf("UpdateTask: %v", err)
	}
	// Neither leases nor wakes append.
	if _, err := s.LeaseDue(ctx, "a", at(100), time.Minute, 10); err != nil {
		t.Fatalf("LeaseDue: %v", err)
	}
	if err := s.WakePending(ctx, at(0)); err != nil {
		t.Fatalf("WakePending: %v", err)
	}
	evs := eventsOf(events(ctx, t, s))
	ds, err := s.Deliveries(ctx, courierID(1), 0, 10)
	if err != nil || len(ds) != 1 || len(evs) != 3 {
		t.Fatalf("deliveries %v (%v), events %+v: want 1 and 3", ds, err, evs)
	}
	want := []event{
		{Seq: evs[0].Seq, Topic: dispatch.TopicTask, Key: taskID(1), Payload: string(dispatch.StatePending)},
		{Seq: evs[1].Seq, Topic: dispatch.TopicTask, Key: taskID(1), Payload: string(dispatch.StateOffered)},
		{Seq: ds[0].Cursor, Topic: dispatch.TopicDelivery, Key: courierID(1), Payload: taskID(1)},
	}
	if diff := cmp.Diff(want, evs); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if !(evs[0].Seq < evs[1].Seq && evs[1].Seq < evs[2].Seq) {
		t.Errorf("event sequence numbers %d, %d, %d: want increasing", evs[0].Seq, evs[1].Seq, evs[2].Seq)
	}
}

// testAckSession: one statement raises the watermark, never lowers it, changes nothing else and appends
// nothing; concurrent acks keep the highest.
func testAckSession(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	c1 := courierID(1)
	wantCode(t, "AckSession(no record)", s.AckSession(ctx, c1, 3), apperr.NotFound)
	rec := dispatch.Session{SessionID: "s1", Epoch: 7, Acked: 5, Replica: "r1", Heartbeat: at(1), Open: true,
		AppVersion: "1.2", Capabilities: []string{"photo"}}
	if _, err := s.UpdateSession(ctx, c1, func(dispatch.Session) (dispatch.Session, error) { return rec, nil }); err != nil {
		t.Fatalf("UpdateSession: %v", err)
	}
	before := len(events(ctx, t, s))
	want := rec
	want.CourierID, want.Heartbeat = c1, utc(rec.Heartbeat)
	for _, step := range []struct {
		cursor, want int64
	}{{3, 5}, {5, 5}, {9, 9}, {8, 9}} {
		if err := s.AckSession(ctx, c1, step.cursor); err != nil {
			t.Fatalf("AckSession(%d): %v", step.cursor, err)
		}
		want.Acked = step.want
		got, err := s.GetSession(ctx, c1)
		if diff := cmp.Diff(want, got, cmpOpts...); err != nil || diff != "" {
			t.Errorf("GetSession after AckSession(%d) error %v (-want +got):\n%s", step.cursor, err, diff)
		}
	}
	if after := len(events(ctx, t, s)); after != before {
		t.Errorf("events after acks = %d, want %d (none appended)", after, before)
	}
	if c, err := s.LastCursor(ctx, c1); err != nil || c != 9 {
		t.Errorf("LastCursor after AckSession(9) = %d, %v, want 9", c, err)
	}

	const n = 20
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { errs[i] = s.AckSession(ctx, c1, int64(10+i)) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent AckSession: %v", err)
	}
	if got, err := s.GetSession(ctx, c1); err != nil || got.Acked != 10+n-1 {
		t.Errorf("GetSession after concurrent acks = acked %d, %v, want %d", got.Acked, err, 10+n-1)
	}
}

// testBeatSessions: only open records whose current session is the one named are refreshed, exactly,
// each returned with its courier's highest delivery cursor; more sessions than one statement takes are
// all refreshed; nothing is appended.
func testBeatSessions(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	recs := map[int]dispatch.Session{
		1: {SessionID: "s1", Epoch: 1, Acked: 4, Replica: "r1", Heartbeat: at(0), Open: true, AppVersion: "1", Capabilities: []string{"photo"}},
		2: {SessionID: "s2", Epoch: 2, Replica: "r1", Heartbeat: at(0), Open: true},
		3: {SessionID: "s3", Epoch: 3, Replica: "r1", Heartbeat: at(0), Open: false},
		4: {SessionID: "s4", Epoch: 4, Replica: "r2", Open: true},
	}
	for n, rec := range recs {
		if _, err := s.UpdateSession(ctx, courierID(n), func(dispatch.Session) (dispatch.Session, error) { return rec, nil }); err != nil {
			t.Fatalf("UpdateSession(courier %d): %v", n, err)
		}
	}
	// Courier 1 has two deliveries: the beat returns the later one's cursor.
	mustCreate(ctx, t, s, newTask(1))
	if _, err := s.UpdateTask(ctx, taskID(1), func(cur dispatch.Task) (dispatch.Change, error) {
		return dispatch.Change{Task: cur, Deliveries: []dispatch.Delivery{
			{CourierID: courierID(1), Kind: dispatch.DeliveryTask, TaskID: cur.ID, Reason: dispatch.NoticeUpdated},
			{CourierID: courierID(1), Kind: dispatch.DeliveryTask, TaskID: cur.ID, Reason: dispatch.NoticeUpdated},
			{CourierID: courierID(2), Kind: dispatch.DeliveryTask, TaskID: cur.ID, Reason: dispatch.NoticeUpdated},
		}}, nil
	}); err != nil {
		t.Fatalf("UpdateTask(deliveries): %v", err)
	}
	last, err := s.LastCursor(ctx, courierID(1))
	if err != nil || last == 0 {
		t.Fatalf("LastCursor(courier 1) = %d, %v", last, err)
	}
	before := len(events(ctx, t, s))
	refs := []dispatch.SessionRef{
		{CourierID: courierID(1), SessionID: "s1"},  // current and open: refreshed
		{CourierID: courierID(2), SessionID: "old"}, // replaced
		{CourierID: courierID(3), SessionID: "s3"},  // closed
		{CourierID: courierID(4), SessionID: "s2"},  // another courier's session id
		{CourierID: courierID(5), SessionID: "s5"},  // no record
	}
	got, err := s.BeatSessions(ctx, refs, at(7))
	if want := map[dispatch.SessionRef]int64{refs[0]: last}; err != nil || !cmp.Equal(want, got) {
		t.Errorf("BeatSessions = %v, %v, want %v", got, err, want)
	}
	for n, rec := range recs {
		want := rec
		want.CourierID, want.Heartbeat = courierID(n), utc(rec.Heartbeat)
		if n == 1 {
			want.Heartbeat = utc(at(7))
		}
		got, err := s.GetSession(ctx, courierID(n))
		if diff := cmp.Diff(want, got, cmpOpts...); err != nil || diff != "" {
			t.Errorf("GetSession(courier %d) after BeatSessions error %v (-want +got):\n%s", n, err, diff)
		}
	}
	conn, err := s.Connected(ctx, []string{courierID(1), courierID(2), courierID(3), courierID(4)}, at(6))
	if want := map[string]bool{courierID(1): true}; err != nil || !cmp.Equal(want, conn) {
		t.Errorf("Connected(since minute 6) after BeatSessions = %v, %v, want %v", conn, err, want)
	}
	if got, err := s.BeatSessions(ctx, nil, at(8)); err != nil || len(got) != 0 {
		t.Errorf("BeatSessions(none) = %v, %v, want empty", got, err)
	}
	if after := len(events(ctx, t, s)); after != before {
		t.Errorf("events after BeatSessions = %d, want %d (none appended)", after, before)
	}

	// More sessions than one statement takes (300 in sqlstore): every one refreshed.
	const many = 650
	var all []dispatch.SessionRef
	wantAll := map[dispatch.SessionRef]int64{}
	for n := 100; n < 100+many; n++ {
		ref := dispatch.SessionRef{CourierID: courierID(n), SessionID: fmt.Sprintf("m%d", n)}
		if _, err := s.UpdateSession(ctx, ref.CourierID, func(cur dispatch.Session) (dispatch.Session, error) {
			cur.SessionID, cur.Open, cur.Heartbeat = ref.SessionID, true, at(0)
			return cur, nil
		}); err != nil {
			t.Fatalf("UpdateSession(courier %d): %v", n, err)
		}
		all, wantAll[ref] = append(all, ref), 0
	}
	got, err = s.BeatSessions(ctx, all, at(9))
	if err != nil || !cmp.Equal(wantAll, got) {
		t.Errorf("BeatSessions(%d sessions) = %d refreshed, %v, want all %d", many, len(got), err, many)
	}
	for _, n := range []int{100, 399, 400, 100 + many - 1} {
		if got, err := s.GetSession(ctx, courierID(n)); err != nil || !got.Heartbeat.Equal(utc(at(9))) {
			t.Errorf("GetSession(courier %d) heartbeat = %v, %v, want %v", n, got.Heartbeat, err, utc(at(9)))
		}
	}
}

// testDeliveriesWithTasks: each delivery as Deliveries reads it, with its task exactly as GetTask reads
// it, or not found; after and limit as in Deliveries.
func testDeliveriesWithTasks(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	mustCreate(ctx, t, s, newTask(1))
	mustCreate(ctx, t, s, newTask(2))
	if _, err := s.UpdateTask(ctx, taskID(1), func(cur dispatch.Task) (dispatch.Change, error) {
		cur = offer(cur, 1, 1, 2)
		return dispatch.Change{Task: cur, Deliveries: []dispatch.Delivery{
			{CourierID: courierID(1), Kind: dispatch.DeliveryOffer, TaskID: cur.ID, OfferID: offerID(1), CreateTime: at(2)},
			{CourierID: courierID(1), Kind: dispatch.DeliveryTask, TaskID: taskID(99), Reason: dispatch.NoticeUpdated, CreateTime: at(2)},
			{CourierID: courierID(2), Kind: dispatch.DeliveryTask, TaskID: taskID(2), Reason: dispatch.NoticeCancelled, CreateTime: at(2)},
		}}, nil
	}); err != nil {
		t.Fatalf("UpdateTask(task 1): %v", err)
	}
	if _, err := s.UpdateTask(ctx, taskID(2), func(cur dispatch.Task) (dispatch.Change, error) {
		cur.Pickup.Instructions = "changed"
		return dispatch.Change{Task: cur, Deliveries: []dispatch.Delivery{
			{CourierID: courierID(1), Kind: dispatch.DeliveryTask, TaskID: cur.ID, Reason: dispatch.NoticeUpdated, CreateTime: at(3)},
		}}, nil
	}); err != nil {
		t.Fatalf("UpdateTask(task 2): %v", err)
	}
	plain, err := s.Deliveries(ctx, courierID(1), 0, 10)
	if err != nil || len(plain) != 3 {
		t.Fatalf("Deliveries = %v, %v, want 3", plain, err)
	}
	task := map[string]dispatch.Task{}
	for _, id := range []string{taskID(1), taskID(2)} {
		if task[id], err = s.GetTask(ctx, id); err != nil {
			t.Fatalf("GetTask(%s): %v", id, err)
		}
	}
	want := []dispatch.DeliveryWithTask{
		{Delivery: plain[0], Task: task[taskID(1)], Found: true},
		{Delivery: plain[1]},
		{Delivery: plain[2], Task: task[taskID(2)], Found: true},
	}
	got, err := s.DeliveriesWithTasks(ctx, courierID(1), 0, 10)
	if diff := cmp.Diff(want, got, cmpOpts...); err != nil || diff != "" {
		t.Errorf("DeliveriesWithTasks error %v (-want +got):\n%s", err, diff)
	}
	if got[2].Task.Pickup.Instructions != "changed" || got[2].Task.Version != 2 {
		t.Errorf("DeliveriesWithTasks task 2 = instructions %q version %d, want the changed task at version 2", got[2].Task.Pickup.Instructions, got[2].Task.Version)
	}
	got, err = s.DeliveriesWithTasks(ctx, courierID(1), plain[0].Cursor, 1)
	if diff := cmp.Diff(want[1:2], got, cmpOpts...); err != nil || diff != "" {
		t.Errorf("DeliveriesWithTasks(after the first, limit 1) error %v (-want +got):\n%s", err, diff)
	}
	if got, err := s.DeliveriesWithTasks(ctx, courierID(1), plain[2].Cursor, 10); err != nil || len(got) != 0 {
		t.Errorf("DeliveriesWithTasks(after the last) = %v, %v, want none", got, err)
	}
	other, err := s.DeliveriesWithTasks(ctx, courierID(2), 0, 10)
	if err != nil || len(other) != 1 || !other[0].Found || other[0].Task.ID != taskID(2) || other[0].Reason != dispatch.NoticeCancelled {
		t.Errorf("DeliveriesWithTasks(courier 2) = %+v, %v, want the cancellation notice of task 2", other, err)
	}
	_, err = s.DeliveriesWithTasks(ctx, courierID(1), 0, 0)
	wantCode(t, "DeliveriesWithTasks(limit 0)", err, apperr.Invalid)

	// Courier 1's offer expires and the task is offered to courier 2: courier 1's offer delivery is
	// superseded (its task not read), courier 2's comes with the task.
	if _, err := s.UpdateTask(ctx, taskID(1), func(cur dispatch.Task) (dispatch.Change, error) {
		cur.Offers[0].State, cur.Offers[0].AnswerTime, cur.State = dispatch.OfferExpired, at(4), dispatch.StatePending
		cur = offer(cur, 2, 2, 4)
		return dispatch.Change{Task: cur, Deliveries: []dispatch.Delivery{
			{CourierID: courierID(1), Kind: dispatch.DeliveryOfferClosed, TaskID: cur.ID, OfferID: offerID(1), CreateTime: at(4)},
			{CourierID: courierID(2), Kind: dispatch.DeliveryOffer, TaskID: cur.ID, OfferID: offerID(2), CreateTime: at(4)},
		}}, nil
	}); err != nil {
		t.Fatalf("UpdateTask(task 1, offered to courier 2): %v", err)
	}
	if task[taskID(1)], err = s.GetTask(ctx, taskID(1)); err != nil {
		t.Fatalf("GetTask: %v", err)
	}
	plain, err = s.Deliveries(ctx, courierID(1), 0, 10)
	if err != nil || len(plain) != 4 {
		t.Fatalf("Deliveries = %v, %v, want 4", plain, err)
	}
	want = []dispatch.DeliveryWithTask{
		{Delivery: plain[0], Superseded: true},
		{Delivery: plain[1]},
		{Delivery: plain[2], Task: task[taskID(2)], Found: true},
		{Delivery: plain[3], Task: task[taskID(1)], Found: true},
	}
	got, err = s.DeliveriesWithTasks(ctx, courierID(1), 0, 10)
	if diff := cmp.Diff(want, got, cmpOpts...); err != nil || diff != "" {
		t.Errorf("DeliveriesWithTasks after the offer closed: error %v (-want +got):\n%s", err, diff)
	}
	other, err = s.DeliveriesWithTasks(ctx, courierID(2), 0, 10)
	if err != nil || len(other) != 2 || !other[1].Found || other[1].Superseded || other[1].Kind != dispatch.DeliveryOffer || other[1].Task.Version != task[taskID(1)].Version {
		t.Errorf("DeliveriesWithTasks(courier 2) = %+v, %v, want its open offer's delivery with task 1", other, err)
	}
}
