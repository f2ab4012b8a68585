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
// from a queue of 1,000 due tasks.
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
}
