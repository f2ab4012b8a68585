package dispatch_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/uuid"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/dispatchtest"
	"lastmile/internal/dispatch/jobargs"
	"lastmile/internal/geo"
)

// jobQueue reads the jobs a system enqueued (River's own table) and holds those not run yet, so that a
// test runs them in an order of its choosing.
type jobQueue struct {
	sys     *dispatchtest.System
	last    int64
	pending []dispatch.Job
}

// fetch adds the jobs enqueued since the last fetch to the pending ones.
func (q *jobQueue) fetch(t *testing.T) {
	t.Helper()
	query := "SELECT id, kind, json(args) FROM river_job WHERE id > $1 ORDER BY id" // SQLite: JSONB
	if q.sys.Pool != nil {
		query = "SELECT id, kind, args::text FROM river_job WHERE id > $1 ORDER BY id"
	}
	rows, err := q.sys.DB.QueryContext(context.Background(), query, q.last)
	if err != nil {
		t.Fatalf("read the enqueued jobs: %v", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			kind string
			args []byte
		)
		if err := rows.Scan(&q.last, &kind, &args); err != nil {
			t.Fatal(err)
		}
		var j dispatch.Job
		switch kind {
		case jobargs.KindClaim:
			var a jobargs.ClaimArgs
			if err := json.Unmarshal(args, &a); err != nil {
				t.Fatal(err)
			}
			j = dispatch.Job{Kind: dispatch.JobClaim, CourierID: a.CourierID, TaskID: a.TaskID, ExpectedRelease: a.ExpectedRelease, Previous: a.PreviousCourierID}
		case jobargs.KindRelease:
			var a jobargs.ReleaseArgs
			if err := json.Unmarshal(args, &a); err != nil {
				t.Fatal(err)
			}
			j = dispatch.Job{Kind: dispatch.JobRelease, CourierID: a.CourierID, TaskID: a.TaskID, Final: a.Final}
		default:
			t.Fatalf("unknown job kind %q", kind)
		}
		q.pending = append(q.pending, j)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}

// take removes a random pending job and returns it; keep leaves it pending too (its completion was not
// recorded: River runs it again).
func (q *jobQueue) take(r *rand.Rand, keep bool) dispatch.Job {
	i := r.IntN(len(q.pending))
	j := q.pending[i]
	if !keep {
		q.pending = append(q.pending[:i], q.pending[i+1:]...)
	}
	return j
}

// Whatever the order in which a task's claim and release jobs run, however often each runs, and
// whatever changes land while their calls are on their way, once every job enqueued has run the courier
// service holds each task's claim on its holder and on no one else. Random histories of dispatchers
// assigning and reassigning, couriers handing back, picking up and delivering, and cancellations,
// interleaved with the jobs run in random order (some twice: a completion River did not record), some
// with a change (and maybe its jobs) made while their call is on its way.
//
// The seeds: of seeds 0 to 59 (300 steps each), these five hold histories that fail when a job does not
// read the holder again after its call landed (seeds 1 and 2), when every release is taken for a final
// task's, without a read (13 and 50), or when a claim refused for a former holder's claim is taken for
// the new courier's refusal (37); all 60 under -race would cost minutes.
func TestClaimsConvergeWhateverTheJobOrder(t *testing.T) {
	for _, seed := range []uint64{1, 2, 13, 37, 50} {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			t.Parallel()
			claimsConverge(t, seed)
		})
	}
}

func claimsConverge(t *testing.T, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 0x6761707321))
	sys := dispatchtest.Start(t, dispatchtest.Config{NoJobs: true, NoRun: true})
	couriers := make([]dispatchtest.Courier, 3)
	for i := range couriers {
		c := dispatchtest.Courier{ID: uuid.NewString(), UserID: uuid.NewString()}
		c.Ctx = dispatchtest.CourierUser(c.UserID)
		at := dispatchtest.Near(dispatchtest.Berlin, float64(100*(i+1)))
		sys.Couriers.Add(c.UserID, dispatch.CourierInfo{ID: c.ID, DisplayName: "courier " + c.ID[:8], Mode: geo.Bicycle, Capacity: 1000}, &at)
		couriers[i] = c
	}
	byID := map[string]dispatchtest.Courier{}
	for _, c := range couriers {
		byID[c.ID] = c
	}
	var tasks, live []string // every task, and those not known to be final
	short := func(id string) string { return id[len(id)-6:] }
	q := &jobQueue{sys: sys}
	var log []string
	// change makes one random change that the state machine allows to a random task not final yet, or
	// creates a task.
	change := func() {
		if len(live) < 3 {
			id := create(t, sys, nil).ID
			tasks, live = append(tasks, id), append(live, id)
			return
		}
		i := r.IntN(len(live))
		tk := stored(t, sys, live[i])
		id := tk.ID
		if tk.State.Final() {
			live = append(live[:i], live[i+1:]...)
			return
		}
		c := couriers[r.IntN(len(couriers))]
		h := byID[tk.CourierID]
		type op struct {
			weight int
			what   string
			do     func() error
		}
		ops := []op{
			{6, "assign to " + short(c.ID), func() error {
				_, err := sys.Service.AssignTask(dispatchtest.Dispatcher(), dispatch.AssignRequest{ID: id, CourierID: c.ID})
				return err
			}},
			{1, "cancel", func() error {
				_, err := sys.Service.CancelTask(dispatchtest.Dispatcher(), dispatch.CancelRequest{ID: id, Reason: dispatch.CancelOther})
				return err
			}},
		}
		switch tk.State {
		case dispatch.StateAssigned:
			ops = append(ops,
				op{5, short(h.ID) + " hands it back", func() error {
					return cmdErr(sys.Service.Execute(h.Ctx, h.ID, uuid.NewString(), dispatch.Command{Release: &dispatch.ReleaseCmd{TaskID: id, Reason: dispatch.ReleaseOther}}))
				}},
				op{1, short(h.ID) + " picks it up", func() error {
					return cmdErr(sys.Service.Execute(h.Ctx, h.ID, uuid.NewString(), dispatch.Command{Pickup: &dispatch.PickupCmd{TaskID: id}}))
				}})
		case dispatch.StatePickedUp:
			ops = []op{{1, short(h.ID) + " delivers it", func() error {
				return cmdErr(sys.Service.Execute(h.Ctx, h.ID, uuid.NewString(), dispatch.Command{Deliver: &dispatch.DeliverCmd{TaskID: id}}))
			}}}
		}
		total := 0
		for _, o := range ops {
			total += o.weight
		}
		n := r.IntN(total)
		for _, o := range ops {
			if n -= o.weight; n < 0 {
				log = append(log, fmt.Sprintf("task %s (%s, holder %q): %s", short(id), tk.State, tk.CourierID, o.what))
				if err := o.do(); err != nil {
					t.Fatalf("%s: %v\n%s", o.what, err, strings.Join(log, "\n"))
				}
				break
			}
		}
		q.fetch(t)
	}
	run := func(j dispatch.Job) {
		log = append(log, fmt.Sprintf("run %s %s of task %s (previous %q, final %v)", j.Kind, short(j.CourierID), short(j.TaskID), j.Previous, j.Final))
		if err := sys.Service.RunJob(context.Background(), j); err != nil {
			t.Fatalf("RunJob(%+v): %v\n%s", j, err, strings.Join(log, "\n"))
		}
		q.fetch(t)
	}
	for range 300 {
		switch {
		case len(q.pending) == 0 || r.IntN(2) == 0:
			change()
		case r.IntN(4) == 0:
			// A change lands while the job's next call is on its way.
			once := func() {
				sys.Couriers.OnClaim(nil)
				sys.Couriers.OnRelease(nil)
				log = append(log, "(while a call is on its way:)")
				change()
				// And the jobs that change enqueued may run before the call lands.
				for len(q.pending) > 0 && r.IntN(2) == 0 {
					run(q.take(r, false))
				}
				log = append(log, "(the call lands)")
			}
			sys.Couriers.OnClaim(once)
			sys.Couriers.OnRelease(func(string, string) { once() })
			run(q.take(r, r.IntN(5) == 0))
			sys.Couriers.OnClaim(nil)
			sys.Couriers.OnRelease(nil)
		default:
			run(q.take(r, r.IntN(5) == 0))
		}
	}
	for len(q.pending) > 0 {
		run(q.take(r, false))
	}
	claims := sys.Couriers.Claims()
	for _, id := range tasks {
		tk := stored(t, sys, id)
		want := ""
		if tk.State.Held() {
			want = tk.CourierID
		}
		if claims[id] != want {
			t.Errorf("task %s is %s held by %q; the courier service's claim is on %q, want %q", short(id), tk.State, tk.CourierID, claims[id], want)
		}
	}
	if t.Failed() {
		t.Logf("history:\n%s", strings.Join(log, "\n"))
	}
}

// cmdErr returns the error of a command's result, nil when it succeeded.
func cmdErr(res dispatch.CommandResult) error {
	if res.Err != nil {
		return fmt.Errorf("%s (%s): %s", res.Err.Code, res.Err.Reason, res.Err.Message)
	}
	return nil
}
