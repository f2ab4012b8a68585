package dispatch

import "context"

// A courier who says they are no longer available (their status turns OFFLINE or ON_BREAK in the
// courier service) while an offer waits for their answer has that offer withdrawn at once, instead of
// keeping the task from everyone else until the offer's deadline: every replica follows the courier
// stream (wake.go), and on the event that tells a courier turned away (one not known away before, a
// stream's snapshot included) it reads the courier's open offer from the database (Store.OfferedTasks;
// not OfferOpen, whose in-memory answer on SQLite may lag a commit others already see), with no call to
// the courier service when there is none. When there is one, it asks the courier service whether the
// courier is still away (the event may be late: a courier back at work since keeps the offer), then
// withdraws it as the other withdrawals do (withdrawOffers): OFFER_STATE_WITHDRAWN, the history's entry
// "offer withdrawn: the courier went offline" or "… is on a break" by the system, an offer_closed
// delivery to the courier, and the task due at once for the next candidate. It is the same conditional
// update under the task's lock, so of the replicas hearing of it one withdraws and the others find
// nothing to do.
//
// Unlike a decline or an expiry, it does not exclude the courier from the task: they did not refuse it,
// and once AVAILABLE again they may be offered it again (the search finds only available couriers, so
// not before). An offer made in the instant the courier turns away (the search read them AVAILABLE, the
// offer committed after the event was handled) and that of a courier who went OFFLINE while the
// replica's courier stream was down (a new stream's snapshot tells ON_BREAK couriers, but not OFFLINE
// ones) wait for the offer's deadline as before.

// away reports whether a courier of status st said they are not available for work.
func away(st CourierStatus) bool { return st == CourierOffline || st == CourierOnBreak }

// awayWhy says, for a task's history, why the offer of a courier of status st was withdrawn.
func awayWhy(st CourierStatus) string {
	if st == CourierOffline {
		return "the courier went offline"
	}
	return "the courier is on a break"
}

// courierAway withdraws the open offer of courier c, who turned away, if they still are (see the top of
// this file). A failure is logged: the offer then waits for its deadline.
func (s *Service) courierAway(ctx context.Context, c CourierInfo) {
	offered, err := s.store.OfferedTasks(ctx, c.ID)
	if err != nil {
		if ctx.Err() == nil {
			s.logger.Warn("dispatch: look for the open offer of a courier who turned away; it waits for its deadline", "courier", c.ID, "status", c.Status, "err", err)
		}
		return
	}
	if len(offered) == 0 {
		return
	}
	now, err := s.couriers.Status(ctx, c.ID)
	if err != nil {
		if ctx.Err() == nil {
			s.logger.Warn("dispatch: check the status of a courier who turned away; their offer waits for its deadline", "courier", c.ID, "status", c.Status, "err", err)
		}
		return
	}
	if !away(now.Status) {
		return // back at work since
	}
	s.withdrawTasksOffers(ctx, offered, c.ID, awayWhy(now.Status), false)
}
