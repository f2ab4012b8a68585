package dispatch

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
)

// A courier whose account is suspended or deleted, or no longer holds the courier role, cannot take
// tasks any more (barred): their session ends (the server revokes it), AssignTask refuses them, and
// what they were offered and the tasks they hold but did not pick up are taken back at once, whether or
// not they hold a session, on whichever replica hears of the change first (barCourier):
//
//   - every replica follows the changes of users' standing (AccountWatcher: the process's subject cache,
//     which identity keeps current on every replica), and for a user who may no longer work and has a
//     courier profile it bars the courier; so does a session's end for that reason (withdrawIfBarred);
//   - each step is the same conditional update under the task's lock as a decline or an expiry, so a
//     second replica, or a second notice of the same change, finds nothing left to do.
//
// A change the replica misses (its queue full, the courier service unreachable to map the user to a
// courier, the subject cache's feed lost), or one made while no replica ran, is caught by the next
// account sweep (sweep.go), every few minutes.
const (
	// accountQueue bounds the changes of standing waiting to be acted on; beyond it a change is dropped
	// (and logged).
	accountQueue = 1024
	// accountTimeout bounds the work done for one change.
	accountTimeout = 30 * time.Second
)

// AccountWatcher is an Accounts that also tells of every change of a user's standing, on every replica
// whoever made it. The process's *auth.Subjects implements it.
type AccountWatcher interface {
	Accounts
	// OnUpdate calls fn with every user's new standing until stop is called. fn must not block.
	OnUpdate(fn func(userID string, st auth.SubjectState)) (stop func())
}

// accountChange is a user who may no longer work as a courier, and why.
type accountChange struct {
	user, why string
}

// barredBy returns why a user of standing st may not work as a courier, "" when they may.
func barredBy(st auth.SubjectState) string {
	switch {
	case !st.Active:
		return "their account is suspended or deleted"
	case !slices.Contains(st.Roles, auth.RoleCourier):
		return "their account no longer has the courier role"
	}
	return ""
}

// followAccounts bars the courier of every user whose standing changes to one that may not work, until
// ctx ends. The changes are queued by the watcher's callback and acted on here, one at a time.
func (s *Service) followAccounts(ctx context.Context) error {
	w, ok := s.accounts.(AccountWatcher)
	if !ok {
		return nil
	}
	queue := make(chan accountChange, accountQueue)
	stop := w.OnUpdate(func(user string, st auth.SubjectState) {
		why := barredBy(st)
		if why == "" {
			return
		}
		select {
		case queue <- accountChange{user: strings.ToLower(user), why: why}:
		default:
			s.logger.Warn("dispatch: too many account changes waiting; the offers of this one wait for their deadlines", "user", user)
		}
	})
	defer stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ch := <-queue:
			s.accountChanged(ctx, ch)
		}
	}
}

// accountChanged bars the courier of user ch.user, if the user has a courier profile and still may not
// work (a change undone since is left alone). Every user's change comes here, customers' too: the user's
// courier profile is looked up (cached as for sessions), one call to the courier service per user.
func (s *Service) accountChanged(ctx context.Context, ch accountChange) {
	ctx, cancel := context.WithTimeout(ctx, accountTimeout)
	defer cancel()
	courierID, err := s.courierOfUser(ctx, ch.user)
	switch {
	case apperr.CodeOf(err) == apperr.NotFound:
		return // not a courier
	case err != nil:
		if ctx.Err() == nil {
			s.logger.Warn("dispatch: find the courier of a user who may no longer work; their offers wait for their deadlines", "user", ch.user, "err", err)
		}
		return
	}
	why, err := s.barred(ctx, ch.user)
	switch {
	case err != nil:
		s.logger.Warn("dispatch: check the account of a courier whose standing changed", "courier", courierID, "err", err)
		return
	case why == "":
		return // active again
	}
	s.barCourier(ctx, courierID, "the courier cannot take tasks: "+why)
}

// barCourier takes back what courierID, who may no longer work, was offered (withdrawOffers) and the
// tasks they hold but did not pick up (releaseHeld), saying why in the tasks' history, and returns how
// many offers and tasks it took back. The offers go first: an offer accepted meanwhile is then a held
// task.
func (s *Service) barCourier(ctx context.Context, courierID, why string) (offers, tasks int) {
	offers = s.withdrawOffers(ctx, courierID, why, true)
	return offers, s.releaseHeld(ctx, courierID, why)
}

// releaseHeld takes back the tasks courierID holds and did not pick up yet (ASSIGNED), as a hand-back
// does: each goes back to PENDING, due at once, is never offered to the courier again, the courier's
// capacity is released (the durable release job) and the courier is told (a notice REASSIGNED); the
// history says why, with the system as its actor. A task the courier picked up stays theirs: the parcel
// is with them, and moving the task would not move it. It is logged for the dispatcher, who sees it in
// the courier's overview (GetCourierStatus) and gives it to another courier once the parcel is
// recovered (AssignTask accepts a picked-up task whose courier may no longer work). It returns how many
// tasks it took back.
func (s *Service) releaseHeld(ctx context.Context, courierID, why string) int {
	held, err := s.store.HeldTasks(ctx, courierID)
	if err != nil {
		if ctx.Err() == nil {
			s.logger.Warn("dispatch: read the tasks to take back", "courier", courierID, "err", err)
		}
		return 0
	}
	released := 0
	for _, t := range held {
		if t.State == StatePickedUp {
			s.logger.Warn("dispatch: a courier who cannot take tasks holds a picked-up parcel; a dispatcher must recover it and assign the task to another courier",
				"courier", courierID, "task", t.ID, "why", why)
			continue
		}
		_, err := s.store.UpdateTask(ctx, t.ID, func(cur Task) (Change, error) {
			if cur.State != StateAssigned || cur.CourierID != courierID {
				return Change{}, errNoChange // picked up, released, reassigned or ended since
			}
			now := s.now()
			if err := cur.transition(StateChange{State: StatePending, At: now, Actor: ActorSystem, CourierID: courierID, Comment: "released: " + why}); err != nil {
				return Change{}, err
			}
			cur.Exclude(courierID, ExcludedUnavailable)
			cur.SearchStart, cur.Searches = storedTime(now), 0
			return Change{
				Task:       cur,
				Jobs:       []Job{{Kind: JobRelease, CourierID: courierID, TaskID: cur.ID}},
				Deliveries: []Delivery{{CourierID: courierID, Kind: DeliveryTask, TaskID: cur.ID, Reason: NoticeReassigned}},
			}, nil
		})
		switch {
		case err == nil:
			released++
		case errors.Is(err, errNoChange):
		case ctx.Err() != nil:
			// The process is stopping: the next sweep (or the live path after the restart) takes it back.
			s.logger.Info("dispatch: taking a task back was cut short by the stop; the next sweep does it", "courier", courierID, "task", t.ID)
		default:
			s.logger.Warn("dispatch: take a task back", "courier", courierID, "task", t.ID, "err", err)
		}
	}
	if released > 0 {
		s.logger.Info("dispatch: tasks taken back", "courier", courierID, "tasks", released, "why", why)
		s.kick()
	}
	return released
}

// withdrawOffers withdraws every open offer to courierID, saying why in the tasks' history: each task goes
// back to PENDING, due at once (the work loop is kicked), and the courier is told the offer closed; with
// exclude, the task is never offered to the courier again. An offer answered, expired or withdrawn
// meanwhile is left alone. It returns how many offers it withdrew.
func (s *Service) withdrawOffers(ctx context.Context, courierID, why string, exclude bool) int {
	offered, err := s.store.OfferedTasks(ctx, courierID)
	if err != nil {
		if ctx.Err() == nil {
			s.logger.Warn("dispatch: read the offers to withdraw", "courier", courierID, "err", err)
		}
		return 0
	}
	return s.withdrawTasksOffers(ctx, offered, courierID, why, exclude)
}

// withdrawTasksOffers is withdrawOffers of the tasks offered, read before.
func (s *Service) withdrawTasksOffers(ctx context.Context, offered []Task, courierID, why string, exclude bool) int {
	withdrawn := 0
	for _, t := range offered {
		_, err := s.store.UpdateTask(ctx, t.ID, func(cur Task) (Change, error) {
			o := cur.CurrentOffer()
			if o == nil || o.CourierID != courierID {
				return Change{}, errNoChange // answered, expired or withdrawn since
			}
			now := s.now()
			cur.closeOffer(OfferWithdrawn, now)
			if err := cur.transition(StateChange{State: StatePending, At: now, Actor: ActorSystem, CourierID: courierID, OfferID: o.ID, Comment: "offer withdrawn: " + why}); err != nil {
				return Change{}, err
			}
			if exclude {
				cur.Exclude(courierID, ExcludedUnavailable)
			}
			return Change{Task: cur, Deliveries: []Delivery{{CourierID: courierID, Kind: DeliveryOfferClosed, TaskID: cur.ID, OfferID: o.ID}}}, nil
		})
		switch {
		case err == nil:
			withdrawn++
			s.metrics.OfferAnswered(OfferWithdrawn)
		case errors.Is(err, errNoChange):
		case ctx.Err() != nil:
			// The process is stopping (or the caller gone): no fault, and the offer waits for its deadline.
			s.logger.Info("dispatch: an offer's withdrawal was cut short by the stop; it waits for its deadline", "courier", courierID, "task", t.ID)
		default:
			s.logger.Warn("dispatch: withdraw an offer", "courier", courierID, "task", t.ID, "err", err)
		}
	}
	if withdrawn > 0 {
		s.logger.Info("dispatch: offers withdrawn", "courier", courierID, "offers", withdrawn, "why", why)
		s.kick()
	}
	return withdrawn
}
