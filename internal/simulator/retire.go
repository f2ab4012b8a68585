package simulator

import (
	"context"
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
	identityv1 "lastmile/gen/go/lastmile/identity/v1"
)

// simEmailDomain is the domain of every simulated account.
const simEmailDomain = "@sim.lastmile.example.com"

// RetireComment is the comment of the tasks RetireEarlierRuns cancels (reason CANCEL_REASON_OTHER).
const RetireComment = "retired by lastmile demo at its start: left open by an earlier simulator run"

// retireMaxPages bounds the pages (of 1,000) RetireEarlierRuns reads of tasks, users and couriers.
const retireMaxPages = 100

// retireDeliveries bounds the earlier runs' couriers that deliver their picked-up parcels at once.
const retireDeliveries = 16

// retireRounds bounds the rounds of SetStatus OFFLINE for couriers still held by a task just cancelled.
const retireRounds = 25

// Retired is what RetireEarlierRuns did.
type Retired struct {
	// TasksCancelled are the earlier runs' open tasks it cancelled (PENDING, OFFERED, ASSIGNED or
	// UNASSIGNABLE). The picked-up ones cannot be cancelled (the contract lets no one cancel a parcel a
	// courier carries): their couriers deliver them (TasksDelivered); TasksPickedUp are those left picked
	// up, as delivering failed, which keep their courier BUSY.
	TasksCancelled, TasksDelivered, TasksPickedUp int
	// CouriersOffline are the earlier runs' couriers it set OFFLINE (they were AVAILABLE, ON_BREAK or BUSY
	// with the tasks it cancelled).
	CouriersOffline int
}

// RetireEarlierRuns retires, as the admin of cfg, what earlier simulator runs left in the deployment at
// cfg.Target: a run that stops leaves its couriers as they were (AVAILABLE without a session, or BUSY with
// the tasks they held) and its tasks open, and each run creates couriers and customers of its own. It
// cancels the open tasks of simulated customers (request id "sim-<run>-<n>") with CANCEL_REASON_OTHER and
// RetireComment; has the couriers of the picked-up ones deliver them, as their app would (the admin
// resets the courier's password, a random one, and logs in as the courier: its session, a photo proof,
// the delivery at the dropoff); then sets the simulated couriers (emails ending
// @sim.lastmile.example.com) OFFLINE. It
// leaves every other task and courier alone, and is idempotent: a second call finds nothing to do. It
// reads at most 100,000 tasks, users and couriers each. `lastmile demo` calls it before it starts its
// simulator; `lastmile simulate` does not, as a deployment may run several simulations at once.
func RetireEarlierRuns(ctx context.Context, cfg Config) (Retired, error) {
	if err := cfg.defaults(); err != nil {
		return Retired{}, err
	}
	c, err := dial(cfg)
	if err != nil {
		return Retired{}, err
	}
	defer c.close()
	admin := &account{auth: c.auth, email: cfg.AdminEmail, password: cfg.AdminPassword}
	if err := admin.login(ctx); err != nil {
		return Retired{}, fmt.Errorf("simulator: admin: %w", err)
	}
	return retire(ctx, cfg, c, admin)
}

// retire is RetireEarlierRuns on connected clients. It runs before a run creates anything, so that every
// simulated task and courier it finds is an earlier run's.
func retire(ctx context.Context, cfg Config, c *clients, admin *account) (Retired, error) {
	var done Retired
	// The tasks first: a courier holding an ASSIGNED task may not go OFFLINE until it is released.
	var cancel []string
	carrying := map[string][]*dispatchv1.Task{} // the picked-up parcels by courier, who may not go OFFLINE
	token := ""
	for range retireMaxPages {
		page, err := call(ctx, admin, func(ctx context.Context) (*dispatchv1.ListTasksResponse, error) {
			return c.dispatch.ListTasks(ctx, &dispatchv1.ListTasksRequest{PageSize: 1000, PageToken: token, States: []dispatchv1.TaskState{
				dispatchv1.TaskState_TASK_STATE_PENDING, dispatchv1.TaskState_TASK_STATE_OFFERED, dispatchv1.TaskState_TASK_STATE_ASSIGNED,
				dispatchv1.TaskState_TASK_STATE_UNASSIGNABLE, dispatchv1.TaskState_TASK_STATE_PICKED_UP,
			}})
		})
		if err != nil {
			return done, fmt.Errorf("simulator: list the open tasks: %w", err)
		}
		for _, t := range page.GetTasks() {
			switch {
			case !strings.HasPrefix(t.GetRequestId(), "sim-"):
			case t.GetState() == dispatchv1.TaskState_TASK_STATE_PICKED_UP:
				carrying[t.GetCourierId()] = append(carrying[t.GetCourierId()], t)
			default:
				cancel = append(cancel, t.GetId())
			}
		}
		if token = page.GetNextPageToken(); token == "" {
			break
		}
	}
	for _, id := range cancel {
		_, err := call(ctx, admin, func(ctx context.Context) (*dispatchv1.Task, error) {
			return c.dispatch.CancelTask(ctx, &dispatchv1.CancelTaskRequest{Id: id, Reason: dispatchv1.CancelReason_CANCEL_REASON_OTHER, Comment: RetireComment})
		})
		switch status.Code(err) {
		case codes.OK:
			done.TasksCancelled++
		case codes.FailedPrecondition, codes.NotFound: // picked up or ended since it was listed
		default:
			return done, fmt.Errorf("simulator: cancel task %s: %w", id, err)
		}
	}

	sim := map[string]string{} // the simulated couriers' emails by user id
	token = ""
	for range retireMaxPages {
		page, err := call(ctx, admin, func(ctx context.Context) (*identityv1.ListUsersResponse, error) {
			return c.users.ListUsers(ctx, &identityv1.ListUsersRequest{PageSize: 1000, PageToken: token, Role: identityv1.Role_ROLE_COURIER, Search: simEmailDomain})
		})
		if err != nil {
			return done, fmt.Errorf("simulator: list the simulated couriers: %w", err)
		}
		for _, u := range page.GetUsers() {
			if strings.HasSuffix(strings.ToLower(u.GetEmail()), simEmailDomain) {
				sim[u.GetId()] = u.GetEmail()
			}
		}
		if token = page.GetNextPageToken(); token == "" {
			break
		}
	}
	if len(sim) == 0 {
		for _, ts := range carrying {
			done.TasksPickedUp += len(ts)
		}
		return done, nil
	}
	var offline []string
	type leftover struct {
		courier *courierv1.Courier
		email   string
		tasks   []*dispatchv1.Task
	}
	var leftovers []leftover
	token = ""
	for range retireMaxPages {
		page, err := call(ctx, admin, func(ctx context.Context) (*courierv1.ListCouriersResponse, error) {
			return c.couriers.ListCouriers(ctx, &courierv1.ListCouriersRequest{PageSize: 1000, PageToken: token})
		})
		if err != nil {
			return done, fmt.Errorf("simulator: list the couriers: %w", err)
		}
		for _, cr := range page.GetCouriers() {
			email, ok := sim[cr.GetUserId()]
			if !ok {
				continue
			}
			if ts := carrying[cr.GetId()]; len(ts) > 0 {
				leftovers = append(leftovers, leftover{cr, email, ts})
			} else if cr.GetStatus() != courierv1.CourierStatus_COURIER_STATUS_OFFLINE {
				offline = append(offline, cr.GetId())
			}
		}
		if token = page.GetNextPageToken(); token == "" {
			break
		}
	}
	// The couriers with parcels deliver them, several at once (each takes a few seconds: its session ends
	// gracefully), then go OFFLINE with the others.
	var mu sync.Mutex
	var wg sync.WaitGroup
	slots := make(chan struct{}, retireDeliveries)
	for _, l := range leftovers {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			delivered, err := deliverLeftovers(ctx, cfg, c, admin, l.courier, l.email, l.tasks)
			mu.Lock()
			defer mu.Unlock()
			done.TasksDelivered += delivered
			if delivered < len(l.tasks) {
				done.TasksPickedUp += len(l.tasks) - delivered
				cfg.Logger.Warn("simulator: an earlier run's courier could not deliver what it carries", "courier", l.courier.GetId(),
					"tasks", len(l.tasks), "delivered", delivered, "error", err)
				return
			}
			offline = append(offline, l.courier.GetId())
		})
	}
	wg.Wait()
	// A courier whose task was just cancelled is released a moment later: until then SetStatus refuses
	// OFFLINE (FAILED_PRECONDITION), so those are tried again, a few rounds at most.
	for round := 0; len(offline) > 0 && round < retireRounds; round++ {
		if round > 0 && !sleep(ctx, 200*time.Millisecond) {
			return done, ctx.Err()
		}
		var again []string
		for _, id := range offline {
			_, err := call(ctx, admin, func(ctx context.Context) (*courierv1.CourierSnapshot, error) {
				return c.couriers.SetStatus(ctx, &courierv1.SetStatusRequest{CourierId: id, Status: courierv1.CourierStatus_COURIER_STATUS_OFFLINE})
			})
			switch status.Code(err) {
			case codes.OK:
				done.CouriersOffline++
			case codes.FailedPrecondition:
				again = append(again, id)
			case codes.NotFound: // deleted since
			default:
				return done, fmt.Errorf("simulator: set courier %s offline: %w", id, err)
			}
		}
		offline = again
	}
	return done, nil
}

// deliverLeftovers has courier cr (user email) deliver the picked-up tasks ts of an earlier run, as its app
// would: the admin gives the account a new random password (the earlier run's is gone with it), and a
// bot logs in with it, holds the courier's session, and at each task's dropoff uploads a photo and
// confirms the delivery. It returns how many it delivered.
func deliverLeftovers(ctx context.Context, cfg Config, c *clients, admin *account, cr *courierv1.Courier, email string, ts []*dispatchv1.Task) (int, error) {
	password := rand.Text()
	if _, err := call(ctx, admin, func(ctx context.Context) (*identityv1.ChangePasswordResponse, error) {
		return c.users.ChangePassword(ctx, &identityv1.ChangePasswordRequest{Id: cr.GetUserId(), NewPassword: password})
	}); err != nil {
		return 0, fmt.Errorf("reset the password of %s: %w", email, err)
	}
	acct := &account{auth: c.auth, email: email, password: password}
	if err := acct.login(ctx); err != nil {
		return 0, fmt.Errorf("log in as %s: %w", email, err)
	}
	r := &run{cfg: cfg, c: c, stats: &Stats{}, rng: mrand.New(mrand.NewPCG(1, 2))}
	bot := newCourierBot(r, c, acct, cr.GetId(), cr.GetTransportMode(), point(ts[0].GetDropoff().GetLocation()), 1)
	sctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { bot.sessionLoop(sctx) })
	defer wg.Wait()
	defer stop() // half-closes the session: the server finishes the commands in flight
	delivered := 0
	var err error
	for _, t := range ts {
		// The courier is at the dropoff already: what it did since the earlier run stopped is not known.
		bot.setPosition(point(t.GetDropoff().GetLocation()), false, 0, 0)
		bot.carry(ctx, t)
		now, gerr := call(ctx, admin, func(ctx context.Context) (*dispatchv1.Task, error) {
			return c.dispatch.GetTask(ctx, &dispatchv1.GetTaskRequest{Id: t.GetId()})
		})
		switch {
		case gerr != nil:
			err = gerr
		case now.GetState() == dispatchv1.TaskState_TASK_STATE_DELIVERED:
			delivered++
		default:
			err = fmt.Errorf("task %s is %s after its delivery (%d errors)", t.GetId(), now.GetState(), r.stats.Errors.Load())
		}
	}
	return delivered, err
}
