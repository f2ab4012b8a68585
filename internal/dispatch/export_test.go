package dispatch

import (
	"context"
	"time"
)

// RunHub runs the hub for tests of package dispatch_test (Run starts it in production).
func (s *Service) RunHub(ctx context.Context) error { return s.runHub(ctx) }

// RouteSessionEvent routes a TopicSession event naming sessionID as courierID's current session, as the
// hub does when it reads one (possibly late).
func (s *Service) RouteSessionEvent(courierID, sessionID string) {
	s.hub.replaceOthers(courierID, sessionID)
}

// WorkOnce leases up to Options.Batch due tasks and works them as one batch, as the work loop does, and
// returns how many it leased (tests run it with Config.NoRun, so that the batch is what they made due).
func (s *Service) WorkOnce(ctx context.Context) (int, error) {
	ts, err := s.store.LeaseDue(ctx, s.opts.Replica, s.now(), s.opts.Lease, s.opts.Batch)
	if err != nil {
		return 0, err
	}
	if len(ts) > 0 {
		s.processBatch(ctx, ts, nil)
	}
	return len(ts), nil
}

// AssignBatch assigns ts as one batch, as the work loop does with the tasks it leased (tests pass copies
// read before another change, so that a write of the batch fails).
func (s *Service) AssignBatch(ctx context.Context, ts []Task) { s.assignBatch(ctx, ts, nil) }

// BeatSessions refreshes the heartbeats of this replica's sessions once, as the hub does every
// HeartbeatInterval.
func (s *Service) BeatSessions(ctx context.Context) { s.hub.beat(ctx) }

// Reserve reserves courierID for a batch of its own, as a batch working beside the loop's does from its
// choice until its writes are done; end ends that batch.
func (s *Service) Reserve(courierID string) (end func()) {
	b := newBatch(s, s.now())
	s.offering.start(b)
	if !s.offering.reserve(courierID, b) {
		panic("courier " + courierID + " is reserved already")
	}
	b.take(courierID)
	return func() { s.endBatch(context.Background(), b) }
}

// Kicked reports whether the work loop was kicked since the last call, and takes the kick.
func (s *Service) Kicked() bool {
	select {
	case <-s.kickCh:
		return true
	default:
		return false
	}
}

// WakeContended does for taskID, deferred while other batches held couriers, what its batch does once
// it is unleased (contention.wake).
func (s *Service) WakeContended(taskID string, couriers ...string) {
	s.wake(context.Background(), contention{waits: map[string][]string{taskID: couriers}})
}

// RetryBackoff is the wait before the next search of a task that searches found nobody for, after
// searches of them (retryBackoff).
func (s *Service) RetryBackoff(taskID string, searches int) time.Duration {
	return s.retryBackoff(taskID, searches)
}

// CouriersFreed returns how many couriers were freed for another task on this replica (courierFreed).
func (s *Service) CouriersFreed() int64 { return s.freedEver.Load() }

// WakeFreed makes waiting tasks due for the couriers freed since its last call, as the work loop does
// before each lease.
func (s *Service) WakeFreed(ctx context.Context) { s.wakeFreed(ctx) }

// FollowedEvents returns how many courier events the replica's follower handled (wake.go): once it
// counted an event, whatever that event woke is written.
func (s *Service) FollowedEvents() int64 { return s.followedEvents.Load() }

// WaitGen returns how many times the replica heard that a task may have started waiting (wake.go's
// mayWait: a deferral here, or a TopicWaiting event of the feed).
func (s *Service) WaitGen() uint64 { return s.waitGen.Load() }

// WithdrawTasksOffers withdraws courierID's open offers of the tasks offered, read before, as the
// withdrawals of a courier who turned away or may no longer work do.
func (s *Service) WithdrawTasksOffers(ctx context.Context, offered []Task, courierID, why string) int {
	return s.withdrawTasksOffers(ctx, offered, courierID, why, false)
}

// CourierAway handles the event that courier c turned OFFLINE or ON_BREAK, as the courier follower does.
func (s *Service) CourierAway(ctx context.Context, c CourierInfo) { s.courierAway(ctx, c) }

// SweepAccounts runs one account sweep now, as the sweep loop does every Options.AccountSweep.
func (s *Service) SweepAccounts(ctx context.Context) AccountSweep { return s.sweepOnce(ctx) }

// CaptureTime is captureTime, for the boundary test.
var CaptureTime = captureTime
