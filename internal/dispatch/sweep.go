package dispatch

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"lastmile/internal/platform/apperr"
)

// The account sweep catches the account changes the live path (barred.go) missed: a change a replica
// did not act on (its queue full, the courier service unreachable to map the user to a courier, the
// subject cache's feed lost) or that was made while no dispatch replica ran. Every Options.AccountSweep
// (5 minutes by default, a tenth of it more or less at random, so that replicas spread), each replica
// pages through the couriers who have an open offer or hold a task they did not pick up
// (Store.CouriersWithWork, sweepPage at a time), asks whether each may still work (the courier
// service's UserOfCourier, remembered for good since a courier profile's user never changes, then the
// account's standing, Accounts), at most sweepRate couriers a second, and bars those who may not as the
// live path does (barCourier): the same conditional updates under each task's lock, so that two
// replicas sweeping together, or a sweep and the live path, take each offer and task back once. A
// courier whose check fails is left to the next sweep. Each sweep is logged when it took something back
// or a check failed, and measured (Metrics.AccountSwept).
const (
	// DefaultAccountSweep is Options.AccountSweep's default.
	DefaultAccountSweep = 5 * time.Minute
	// sweepPage bounds the couriers read per page of a sweep.
	sweepPage = 100
	// sweepRate bounds the couriers checked per second by a sweep.
	sweepRate = 100
	// maxSweepUsers bounds the couriers whose user a replica remembers; beyond it it forgets them all.
	maxSweepUsers = 100_000
)

// AccountSweep is what one account sweep did (Metrics.AccountSwept).
type AccountSweep struct {
	// Checked counts the couriers whose account was read; Failed the checks that failed (a courier's,
	// left to the next sweep, or the listing of the couriers); Barred the couriers found unable to work.
	Checked, Failed, Barred int
	// Offers and Tasks count the open offers withdrawn and the tasks taken back by this sweep: what the
	// live path had missed (or took back at the same moment on another replica, which then did not).
	Offers, Tasks int
}

// sweeper is the state of a replica's account sweeps.
type sweeper struct {
	// mu is held by a running sweep: a replica runs one at a time.
	mu sync.Mutex
	// users maps courier ids to their user ids.
	users map[string]string
}

// sweepAccounts runs an account sweep every Options.AccountSweep until ctx ends. Without Deps.Accounts
// there is nothing to check.
func (s *Service) sweepAccounts(ctx context.Context) error {
	if s.accounts == nil {
		return nil
	}
	every := s.opts.AccountSweep
	// next is the time to the next sweep: every, ±10 %.
	next := func() time.Duration { return every + time.Duration(rand.Int64N(int64(every/5)+1)) - every/10 }
	t := time.NewTimer(next())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		s.sweepOnce(ctx)
		t.Reset(next())
	}
}

// sweepOnce runs one account sweep now (see the top of this file) and returns what it did. It
// returns when the sweep is done or ctx ends; sweeps on one replica run one at a time.
func (s *Service) sweepOnce(ctx context.Context) AccountSweep {
	var out AccountSweep
	if s.accounts == nil {
		return out
	}
	s.sweep.mu.Lock()
	defer s.sweep.mu.Unlock()
	pace := time.NewTicker(time.Second / sweepRate)
	defer pace.Stop()
	var firstErr error
	after := ""
	for ctx.Err() == nil {
		ids, err := s.store.CouriersWithWork(ctx, after, sweepPage)
		if err != nil {
			if ctx.Err() == nil {
				out.Failed++
				firstErr = cmp.Or(firstErr, fmt.Errorf("list the couriers with work: %w", err))
			}
			break
		}
		for _, id := range ids {
			select {
			case <-ctx.Done():
			case <-pace.C:
				if err := s.sweepCourier(ctx, id, &out); err != nil && ctx.Err() == nil {
					out.Failed++
					firstErr = cmp.Or(firstErr, fmt.Errorf("check whether courier %s may still work: %w", id, err))
				}
			}
		}
		if len(ids) < sweepPage {
			break
		}
		after = ids[len(ids)-1]
	}
	s.metrics.AccountSwept(out)
	switch {
	case out.Failed > 0:
		s.logger.Warn("dispatch: account sweep: some checks failed; those couriers are left to the next sweep", "checked", out.Checked, "failed", out.Failed,
			"barred", out.Barred, "offers_withdrawn", out.Offers, "tasks_taken_back", out.Tasks, "first_error", firstErr)
	case out.Offers+out.Tasks > 0:
		s.logger.Info("dispatch: account sweep", "checked", out.Checked, "barred", out.Barred, "offers_withdrawn", out.Offers, "tasks_taken_back", out.Tasks)
	default:
		s.logger.Debug("dispatch: account sweep", "checked", out.Checked, "barred", out.Barred)
	}
	return out
}

// sweepCourier checks whether courierID may still work and, if not, takes back what they have. It
// returns the check's failure.
func (s *Service) sweepCourier(ctx context.Context, courierID string, out *AccountSweep) error {
	user, err := s.sweepUser(ctx, courierID)
	if apperr.CodeOf(err) == apperr.NotFound {
		return nil // no such courier profile: nobody to ask about
	}
	var why string
	if err == nil {
		why, err = s.barred(ctx, user)
	}
	if err != nil {
		return err
	}
	out.Checked++
	if why == "" {
		return nil
	}
	out.Barred++
	offers, tasks := s.barCourier(ctx, courierID, "the courier cannot take tasks: "+why)
	out.Offers += offers
	out.Tasks += tasks
	if offers+tasks > 0 {
		s.logger.Warn("dispatch: account sweep: a courier who may no longer work still had offers or tasks; took them back", "courier", courierID, "offers", offers, "tasks", tasks, "why", why)
	}
	return nil
}

// sweepUser returns the user of courierID, remembered once asked (a courier profile is linked to one
// user for good). Only the sweep calls it, holding s.sweep.mu.
func (s *Service) sweepUser(ctx context.Context, courierID string) (string, error) {
	if u, ok := s.sweep.users[courierID]; ok {
		return u, nil
	}
	u, err := s.couriers.UserOfCourier(ctx, courierID)
	if err != nil {
		return "", err
	}
	if s.sweep.users == nil || len(s.sweep.users) >= maxSweepUsers {
		s.sweep.users = map[string]string{}
	}
	s.sweep.users[courierID] = u
	return u, nil
}
