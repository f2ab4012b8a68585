package simulator

import (
	"context"
	"fmt"
	"strings"
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

// retireRounds bounds the rounds of SetStatus OFFLINE for couriers still held by a task just cancelled.
const retireRounds = 25

// Retired is what RetireEarlierRuns did.
type Retired struct {
	// TasksCancelled are the earlier runs' open tasks it cancelled (PENDING, OFFERED, ASSIGNED or
	// UNASSIGNABLE); TasksPickedUp those it could not, as they were picked up (the contract lets no one
	// cancel a parcel a courier carries), which keep their courier BUSY.
	TasksCancelled, TasksPickedUp int
	// CouriersOffline are the earlier runs' couriers it set OFFLINE (they were AVAILABLE, ON_BREAK or BUSY
	// with the tasks it cancelled).
	CouriersOffline int
}

// RetireEarlierRuns retires, as the admin of cfg, what earlier simulator runs left in the deployment at
// cfg.Target: a run that stops leaves its couriers as they were (AVAILABLE without a session, or BUSY with
// the tasks they held) and its tasks open, and each run creates couriers and customers of its own. It
// cancels the open tasks of simulated customers (request id "sim-<run>-<n>") with CANCEL_REASON_OTHER and
// RetireComment, then sets the simulated couriers (emails ending @sim.lastmile.example.com) OFFLINE. It
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
	return retire(ctx, c, admin)
}

// retire is RetireEarlierRuns on connected clients. It runs before a run creates anything, so that every
// simulated task and courier it finds is an earlier run's.
func retire(ctx context.Context, c *clients, admin *account) (Retired, error) {
	var done Retired
	// The tasks first: a courier holding an ASSIGNED task may not go OFFLINE until it is released.
	var cancel []string
	carrying := map[string]bool{} // couriers with a picked-up parcel, who may not go OFFLINE
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
				done.TasksPickedUp++
				carrying[t.GetCourierId()] = true
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

	sim := map[string]bool{} // the simulated couriers' user ids
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
				sim[u.GetId()] = true
			}
		}
		if token = page.GetNextPageToken(); token == "" {
			break
		}
	}
	if len(sim) == 0 {
		return done, nil
	}
	var offline []string
	token = ""
	for range retireMaxPages {
		page, err := call(ctx, admin, func(ctx context.Context) (*courierv1.ListCouriersResponse, error) {
			return c.couriers.ListCouriers(ctx, &courierv1.ListCouriersRequest{PageSize: 1000, PageToken: token})
		})
		if err != nil {
			return done, fmt.Errorf("simulator: list the couriers: %w", err)
		}
		for _, cr := range page.GetCouriers() {
			if sim[cr.GetUserId()] && !carrying[cr.GetId()] && cr.GetStatus() != courierv1.CourierStatus_COURIER_STATUS_OFFLINE {
				offline = append(offline, cr.GetId())
			}
		}
		if token = page.GetNextPageToken(); token == "" {
			break
		}
	}
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
