package storetest

import (
	"fmt"
	"testing"
	"time"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/sqlstore"
)

// Bench measures the store's hot paths on s (empty, migrated, as Run's): CreateTask; one task's life to
// assignment (CreateTask, then UpdateTask as the worker makes an offer, with a delivery and a decision,
// then as the courier accepts it, with a command record and a claim job); and LeaseDue of a batch of 8
// from a queue of 1,000 due tasks; and a batch's read of its couriers' states (CourierStates) after a
// write, as the engine makes it.
func Bench(b *testing.B, s *sqlstore.Store) {
	ctx := b.Context()
	s.SetJobs(sqlstore.RiverJobs(newJobs(b, s)))
	n := 0
	b.Run("CreateTask", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			n++
			if _, _, err := s.CreateTask(ctx, newTask(n)); err != nil {
				b.Fatalf("CreateTask: %v", err)
			}
		}
	})
	b.Run("CreateOfferAccept", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			n++
			task := newTask(n)
			if _, _, err := s.CreateTask(ctx, task); err != nil {
				b.Fatalf("CreateTask: %v", err)
			}
			_, err := s.UpdateTask(ctx, task.ID, func(cur dispatch.Task) (dispatch.Change, error) {
				cur = offer(cur, n, 1, n)
				return dispatch.Change{
					Task:       cur,
					Deliveries: []dispatch.Delivery{{CourierID: courierID(1), Kind: dispatch.DeliveryOffer, TaskID: cur.ID, OfferID: offerID(n)}},
					Decision:   &dispatch.Decision{ID: fmt.Sprintf("decision-%d", n), TaskID: cur.ID, DecideTime: at(n), Outcome: dispatch.OutcomeOffered},
				}, nil
			})
			if err != nil {
				b.Fatalf("UpdateTask(offer): %v", err)
			}
			_, err = s.UpdateTask(ctx, task.ID, func(cur dispatch.Task) (dispatch.Change, error) {
				return dispatch.Change{
					Task:    assign(cur, 1, n),
					Command: &dispatch.CommandRecord{CourierID: courierID(1), CommandID: fmt.Sprintf("cmd-%d", n), TaskID: cur.ID},
					Jobs:    []dispatch.Job{{Kind: dispatch.JobClaim, CourierID: courierID(1), TaskID: cur.ID, ExpectedRelease: at(n + 60)}},
				}, nil
			})
			if err != nil {
				b.Fatalf("UpdateTask(accept): %v", err)
			}
		}
	})
	b.Run("LeaseDue/8of1000", func(b *testing.B) {
		for range 1000 {
			n++
			if _, _, err := s.CreateTask(ctx, newTask(n)); err != nil {
				b.Fatalf("CreateTask: %v", err)
			}
		}
		now := at(n + 1)
		b.ReportAllocs()
		for b.Loop() {
			// A short lease and a clock that moves past it keep the whole queue leasable.
			now = now.Add(time.Second)
			got, err := s.LeaseDue(ctx, "bench", now, time.Millisecond, 8)
			if err != nil || len(got) != 8 {
				b.Fatalf("LeaseDue = %d tasks, %v", len(got), err)
			}
		}
	})
	b.Run("CourierStates/180of1000", func(b *testing.B) { benchCourierStates(b, s, n) })
}

// benchCourierStates measures CourierStates of 180 of 1,000 connected couriers, 60 of them holding 5
// tasks each (the held part) and some with an open offer, after a heartbeat of 10 sessions (so that
// the read follows a write, as in a running service). Tasks are numbered from after n.
func benchCourierStates(b *testing.B, s *sqlstore.Store, n int) {
	ctx := b.Context()
	const couriers, held, offered = 1000, 5, 50
	now := at(n + 1)
	since := now.Add(-time.Minute)
	refs := make([]dispatch.SessionRef, couriers)
	for c := range couriers {
		refs[c] = dispatch.SessionRef{CourierID: courierID(c + 1), SessionID: fmt.Sprintf("s%d", c+1)}
		_, err := s.UpdateSession(ctx, refs[c].CourierID, func(cur dispatch.Session) (dispatch.Session, error) {
			return dispatch.Session{SessionID: refs[c].SessionID, Replica: "r1", Heartbeat: now, Open: true, AppVersion: "1"}, nil
		})
		if err != nil {
			b.Fatalf("UpdateSession: %v", err)
		}
	}
	// Every third courier holds tasks, every twentieth has an open offer.
	for c := 1; c <= couriers; c++ {
		k := 0
		if c%3 == 0 {
			k = held
		}
		for range k {
			n++
			task := newTask(n)
			task = assign(task, c, n)
			if _, _, err := s.CreateTask(ctx, task); err != nil {
				b.Fatalf("CreateTask: %v", err)
			}
		}
		if c%(couriers/offered) == 0 {
			n++
			if _, _, err := s.CreateTask(ctx, offer(newTask(n), n, c, n)); err != nil {
				b.Fatalf("CreateTask: %v", err)
			}
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		b.StopTimer()
		now = now.Add(time.Second)
		if _, err := s.BeatSessions(ctx, refs[i%100*10:i%100*10+10], now); err != nil {
			b.Fatalf("BeatSessions: %v", err)
		}
		ids := make([]string, 0, 180)
		var heldOf []string
		for k := range 180 {
			c := (i*7+k*5)%couriers + 1
			ids = append(ids, courierID(c))
			if c%3 == 0 {
				heldOf = append(heldOf, courierID(c))
			}
		}
		i++
		b.StartTimer()
		st, err := s.CourierStates(ctx, ids, since, heldOf)
		if err != nil || len(st.Connected) != len(ids) || len(st.Held) != len(heldOf) {
			b.Fatalf("CourierStates = %d connected, %d holding, %v; want %d, %d", len(st.Connected), len(st.Held), err, len(ids), len(heldOf))
		}
	}
}
