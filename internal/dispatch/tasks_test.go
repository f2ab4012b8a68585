package dispatch_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/dispatchtest"
	"lastmile/internal/geo"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/apperrtest"
	"lastmile/internal/platform/auth"
)

func TestCreateTaskIsIdempotentPerCaller(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true})
	cust := uuid.NewString()
	ctx := dispatchtest.Customer(cust)
	req := dispatchtest.Request("order-1", dispatchtest.Berlin, "")
	first, err := sys.Service.CreateTask(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if first.State != dispatch.StatePending || first.CustomerID != cust || first.Priority != dispatch.PriorityNormal || first.Size != dispatch.SizeSmall || first.ETag() != `"1"` {
		t.Fatalf("created %+v", first)
	}
	again, err := sys.Service.CreateTask(ctx, req)
	if err != nil || again.ID != first.ID {
		t.Fatalf("retry = %v, %v; want task %s", again.ID, err, first.ID)
	}
	other := req
	other.Notes = "fragile"
	_, err = sys.Service.CreateTask(ctx, other)
	apperrtest.WantCode(t, "same request id, other fields", err, apperr.Conflict)

	// Another caller may use the same request id: ids are per caller.
	mine, err := sys.Service.CreateTask(dispatchtest.Customer(uuid.NewString()), req)
	if err != nil || mine.ID == first.ID {
		t.Fatalf("another customer's create = %v, %v; want a new task", mine.ID, err)
	}

	// Concurrent duplicates create one task.
	var wg sync.WaitGroup
	ids := make(chan string, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tk, err := sys.Service.CreateTask(ctx, dispatchtest.Request("order-2", dispatchtest.Berlin, ""))
			if err != nil {
				t.Errorf("concurrent create: %v", err)
				return
			}
			ids <- tk.ID
		}()
	}
	wg.Wait()
	close(ids)
	seen := map[string]bool{}
	for id := range ids {
		seen[id] = true
	}
	if len(seen) != 1 {
		t.Fatalf("20 concurrent creates made %d tasks, want 1", len(seen))
	}
}

func TestCreateTaskRules(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true})
	cust := uuid.NewString()
	now := sys.Clock.Now()
	cases := []struct {
		name  string
		ctx   context.Context
		edit  func(*dispatch.CreateRequest)
		code  apperr.Code
		field string
	}{
		{"courier", dispatchtest.CourierUser(uuid.NewString()), nil, apperr.PermissionDenied, ""},
		{"customer for another customer", dispatchtest.Customer(cust), func(r *dispatch.CreateRequest) { r.CustomerID = uuid.NewString() }, apperr.PermissionDenied, ""},
		{"dispatcher without customer", dispatchtest.Dispatcher(), func(r *dispatch.CreateRequest) { r.CustomerID = "" }, apperr.Invalid, "customer_id"},
		{"window already ended", dispatchtest.Customer(cust), func(r *dispatch.CreateRequest) {
			r.Pickup.Window = &dispatch.Window{Start: now.Add(-2 * time.Hour), End: now.Add(-time.Hour)}
		}, apperr.Invalid, "pickup.time_window.end_time"},
		{"window too far ahead", dispatchtest.Customer(cust), func(r *dispatch.CreateRequest) {
			r.Pickup.Window = &dispatch.Window{Start: now.Add(31 * 24 * time.Hour), End: now.Add(32 * 24 * time.Hour)}
		}, apperr.Invalid, "pickup.time_window.start_time"},
		{"dropoff window before pickup window", dispatchtest.Customer(cust), func(r *dispatch.CreateRequest) {
			r.Pickup.Window = &dispatch.Window{Start: now.Add(2 * time.Hour), End: now.Add(3 * time.Hour)}
			r.Dropoff.Window = &dispatch.Window{Start: now, End: now.Add(time.Hour)}
		}, apperr.Invalid, "dropoff.time_window.end_time"},
		{"barcode proof without barcode", dispatchtest.Customer(cust), func(r *dispatch.CreateRequest) {
			r.ProofRequirements = []dispatch.ProofRequirement{{Kind: dispatch.ProofBarcode, Stage: dispatch.StagePickup}}
		}, apperr.Invalid, "proof_requirements[0].kind"},
		{"code at pickup", dispatchtest.Customer(cust), func(r *dispatch.CreateRequest) {
			r.ProofRequirements = []dispatch.ProofRequirement{{Kind: dispatch.ProofCode, Stage: dispatch.StagePickup}}
		}, apperr.Invalid, "proof_requirements[0].stage"},
		{"bad phone", dispatchtest.Customer(cust), func(r *dispatch.CreateRequest) { r.Dropoff.Contact.Phone = "12345" }, apperr.Invalid, "dropoff.contact.phone"},
		{"bad location", dispatchtest.Customer(cust), func(r *dispatch.CreateRequest) { r.Pickup.Location = geo.LatLng{Lat: 91} }, apperr.Invalid, "pickup.location"},
		// An address that shows nothing is none.
		{"blank address", dispatchtest.Customer(cust), func(r *dispatch.CreateRequest) { r.Pickup.Address = "   " }, apperr.Invalid, "pickup.address"},
		{"invisible address", dispatchtest.Customer(cust), func(r *dispatch.CreateRequest) { r.Dropoff.Address = "\u200b\u00a0" }, apperr.Invalid, "dropoff.address"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := dispatchtest.Request(fmt.Sprintf("rule-%d", i), dispatchtest.Berlin, "")
			if c.edit != nil {
				c.edit(&req)
			}
			_, err := sys.Service.CreateTask(c.ctx, req)
			apperrtest.WantCode(t, c.name, err, c.code)
			if c.field != "" {
				apperrtest.WantViolations(t, c.name, err, []string{c.field})
			}
		})
	}
}

func TestDeliveryCodeIsGeneratedAndHiddenFromCouriers(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true})
	cust := uuid.NewString()
	req := dispatchtest.Request("code-1", dispatchtest.Berlin, "")
	req.ProofRequirements = []dispatch.ProofRequirement{{Kind: dispatch.ProofCode, Stage: dispatch.StageDropoff}}
	tk, err := sys.Service.CreateTask(dispatchtest.Customer(cust), req)
	if err != nil {
		t.Fatal(err)
	}
	if len(tk.DeliveryCode) != 4 || tk.ProofRequirements[0].Policy != dispatch.ProofRequired {
		t.Fatalf("code %q, requirements %+v", tk.DeliveryCode, tk.ProofRequirements)
	}
	c := sys.AddCourier(t, dispatchtest.Berlin, geo.Bicycle, true)
	held, err := sys.Service.AssignTask(dispatchtest.Dispatcher(), dispatch.AssignRequest{ID: tk.ID, CourierID: c.ID})
	if err != nil {
		t.Fatal(err)
	}
	if held.DeliveryCode != tk.DeliveryCode {
		t.Fatalf("dispatcher sees code %q, want %q", held.DeliveryCode, tk.DeliveryCode)
	}
	mine, err := sys.Service.GetTask(c.Ctx, tk.ID, dispatch.ViewFull)
	if err != nil {
		t.Fatal(err)
	}
	if mine.DeliveryCode != "" || mine.Dropoff.Contact.Name != "Ada" {
		t.Fatalf("courier sees code %q and contact %q; want no code and the contact", mine.DeliveryCode, mine.Dropoff.Contact.Name)
	}
}

func TestVisibility(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true})
	alice, bob := uuid.NewString(), uuid.NewString()
	tk, err := sys.Service.CreateTask(dispatchtest.Customer(alice), dispatchtest.Request("v-1", dispatchtest.Berlin, ""))
	if err != nil {
		t.Fatal(err)
	}
	_, err = sys.Service.GetTask(dispatchtest.Customer(bob), tk.ID, "")
	apperrtest.WantCode(t, "another customer's task", err, apperr.NotFound)
	stranger := sys.AddCourier(t, dispatchtest.Berlin, geo.Bicycle, true)
	_, err = sys.Service.GetTask(stranger.Ctx, tk.ID, "")
	apperrtest.WantCode(t, "a courier's unrelated task", err, apperr.NotFound)
	_, err = sys.Service.GetTask(dispatchtest.Customer(alice), uuid.NewString(), "")
	apperrtest.WantCode(t, "a missing task", err, apperr.NotFound)

	// A courier who holds the task sees it with contacts; a customer never sees who was offered it.
	if _, err := sys.Service.AssignTask(dispatchtest.Dispatcher(), dispatch.AssignRequest{ID: tk.ID, CourierID: stranger.ID}); err != nil {
		t.Fatal(err)
	}
	if got, err := sys.Service.GetTask(stranger.Ctx, tk.ID, ""); err != nil || got.Pickup.Address == "" {
		t.Fatalf("holder's read = %+v, %v", got, err)
	}
	_, err = sys.Service.ListTasks(dispatchtest.Customer(alice), dispatch.ListRequest{Filter: dispatch.TaskFilter{CustomerID: bob}})
	apperrtest.WantCode(t, "customer filtering on another customer", err, apperr.PermissionDenied)
	_, err = sys.Service.ListTasks(stranger.Ctx, dispatch.ListRequest{Filter: dispatch.TaskFilter{CourierID: uuid.NewString()}})
	apperrtest.WantCode(t, "courier filtering on another courier", err, apperr.PermissionDenied)
	page, err := sys.Service.ListTasks(stranger.Ctx, dispatch.ListRequest{})
	if err != nil || page.Total != 1 || len(page.Tasks) != 1 || page.Tasks[0].ID != tk.ID {
		t.Fatalf("courier's list = %+v, %v", page, err)
	}
}

// A courier's ListTasks and WatchTasks show every task they held, also one they handed back and that
// went on without them: in pages, counted, filtered by state; WatchTasks goes on sending its changes.
func TestCourierListsTheTasksTheyHeld(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{})
	c := sys.AddCourier(t, dispatchtest.Berlin, geo.Car, false) // no session: the engine offers it nothing
	customer := dispatchtest.Customer(uuid.NewString())
	tk, err := sys.Service.CreateTask(customer, dispatchtest.Request(uuid.NewString(), dispatchtest.Berlin, ""))
	if err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, c.Ctx, func(ctx context.Context, send func(dispatch.WatchItem) error) error {
		return sys.Service.WatchTasks(ctx, dispatch.TaskFilter{}, "", send)
	})
	if got := describeItem(w.recv(t)); got != "complete 0 truncated false" {
		t.Fatalf("snapshot: %s", got)
	}
	if _, err := sys.Service.AssignTask(dispatchtest.Dispatcher(), dispatch.AssignRequest{ID: tk.ID, CourierID: c.ID}); err != nil {
		t.Fatal(err)
	}
	if r := sys.Service.Execute(c.Ctx, c.ID, "r1", dispatch.Command{Release: &dispatch.ReleaseCmd{TaskID: tk.ID, Reason: dispatch.ReleaseTooFar}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	// until reads the watch's items, each about tk in one of states, until one in state last.
	until := func(last dispatch.State, states ...dispatch.State) {
		t.Helper()
		for {
			it := w.recv(t)
			switch {
			case it.Task == nil || it.Task.ID != tk.ID:
				t.Fatalf("watch sent %s", describeItem(it))
			case it.Task.State == last:
				return
			case !slices.Contains(states, it.Task.State):
				t.Fatalf("watch sent %s, want %s", describeItem(it), last)
			}
		}
	}
	until(dispatch.StatePending, dispatch.StateAssigned) // handed back (the feed may fold the assignment in)
	// The task is no longer c's, and the watch still sends its changes.
	if _, err := sys.Service.CancelTask(customer, dispatch.CancelRequest{ID: tk.ID, Reason: dispatch.CancelCustomerRequest}); err != nil {
		t.Fatal(err)
	}
	until(dispatch.StateCancelled, dispatch.StatePending) // the engine's searches while pending, then cancelled

	tk2, err := sys.Service.CreateTask(customer, dispatchtest.Request(uuid.NewString(), dispatchtest.Berlin, ""))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the hand-back's release", func() bool { _, held := sys.Couriers.Claims()[tk.ID]; return !held }) // c is free again
	if _, err := sys.Service.AssignTask(dispatchtest.Dispatcher(), dispatch.AssignRequest{ID: tk2.ID, CourierID: c.ID}); err != nil {
		t.Fatal(err)
	}
	page, err := sys.Service.ListTasks(c.Ctx, dispatch.ListRequest{PageSize: 1})
	if err != nil || page.Total != 2 || len(page.Tasks) != 1 || page.Tasks[0].ID != tk2.ID || page.NextPageToken == "" {
		t.Fatalf("courier's first page = %+v, %v; want %s of 2 and a token", page, err, tk2.ID)
	}
	page, err = sys.Service.ListTasks(c.Ctx, dispatch.ListRequest{PageSize: 1, PageToken: page.NextPageToken})
	if err != nil || page.Total != 2 || len(page.Tasks) != 1 || page.Tasks[0].ID != tk.ID || page.NextPageToken != "" {
		t.Fatalf("courier's second page = %+v, %v; want the handed back %s, last", page, err, tk.ID)
	}
	if page.Tasks[0].CourierID != "" || page.Tasks[0].State != dispatch.StateCancelled {
		t.Fatalf("handed back task as listed: courier %q, state %s", page.Tasks[0].CourierID, page.Tasks[0].State)
	}
	page, err = sys.Service.ListTasks(c.Ctx, dispatch.ListRequest{Filter: dispatch.TaskFilter{States: []dispatch.State{dispatch.StateCancelled}}})
	if err != nil || page.Total != 1 || len(page.Tasks) != 1 || page.Tasks[0].ID != tk.ID {
		t.Fatalf("courier's cancelled tasks = %+v, %v", page, err)
	}
}

func TestListTasksPages(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true})
	cust := uuid.NewString()
	ctx := dispatchtest.Customer(cust)
	var want []string
	for i := range 7 {
		tk, err := sys.Service.CreateTask(ctx, dispatchtest.Request(fmt.Sprintf("p-%d", i), dispatchtest.Berlin, ""))
		if err != nil {
			t.Fatal(err)
		}
		want = append([]string{tk.ID}, want...) // newest first
		sys.Clock.Advance(time.Second)
	}
	if _, err := sys.Service.CreateTask(dispatchtest.Customer(uuid.NewString()), dispatchtest.Request("other", dispatchtest.Berlin, "")); err != nil {
		t.Fatal(err)
	}
	var got []string
	token := ""
	for pages := 0; ; pages++ {
		page, err := sys.Service.ListTasks(ctx, dispatch.ListRequest{PageSize: 3, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		if page.Total != 7 {
			t.Fatalf("total %d, want 7", page.Total)
		}
		for _, tk := range page.Tasks {
			got = append(got, tk.ID)
			if tk.History != nil {
				t.Fatalf("list default view is BASIC, got history %+v", tk.History)
			}
		}
		token = page.NextPageToken
		if token == "" {
			break
		}
		if pages > 3 {
			t.Fatal("too many pages")
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("pages gave %v, want %v", got, want)
	}
	_, err := sys.Service.ListTasks(ctx, dispatch.ListRequest{PageToken: "garbage"})
	apperrtest.WantCode(t, "malformed token", err, apperr.Invalid)
	first, err := sys.Service.ListTasks(ctx, dispatch.ListRequest{PageSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = sys.Service.ListTasks(ctx, dispatch.ListRequest{PageSize: 1, PageToken: first.NextPageToken, Filter: dispatch.TaskFilter{States: []dispatch.State{dispatch.StatePending}}})
	apperrtest.WantCode(t, "token for other filters", err, apperr.Invalid)
}

// A page token is issued for a set of states: the next page may list them in another order.
func TestListTasksPageTokenIgnoresTheOrderOfStates(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true})
	ctx := dispatchtest.Customer(uuid.NewString())
	var want []string
	for i := range 3 {
		tk, err := sys.Service.CreateTask(ctx, dispatchtest.Request(fmt.Sprintf("s-%d", i), dispatchtest.Berlin, ""))
		if err != nil {
			t.Fatal(err)
		}
		want = append([]string{tk.ID}, want...) // newest first
		sys.Clock.Advance(time.Second)
	}
	first, err := sys.Service.ListTasks(ctx, dispatch.ListRequest{PageSize: 2,
		Filter: dispatch.TaskFilter{States: []dispatch.State{dispatch.StatePending, dispatch.StateCancelled}}})
	if err != nil {
		t.Fatal(err)
	}
	if first.NextPageToken == "" || len(first.Tasks) != 2 {
		t.Fatalf("first page %d tasks, next page token %q", len(first.Tasks), first.NextPageToken)
	}
	second, err := sys.Service.ListTasks(ctx, dispatch.ListRequest{PageSize: 2, PageToken: first.NextPageToken,
		Filter: dispatch.TaskFilter{States: []dispatch.State{dispatch.StateCancelled, dispatch.StatePending}}})
	if err != nil {
		t.Fatalf("the same states in another order: %v", err)
	}
	got := []string{first.Tasks[0].ID, first.Tasks[1].ID}
	for _, tk := range second.Tasks {
		got = append(got, tk.ID)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || second.NextPageToken != "" {
		t.Fatalf("pages gave %v (next %q), want %v", got, second.NextPageToken, want)
	}
}

func TestCancelTask(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true})
	cust := uuid.NewString()
	ctx := dispatchtest.Customer(cust)
	tk, err := sys.Service.CreateTask(ctx, dispatchtest.Request("c-1", dispatchtest.Berlin, ""))
	if err != nil {
		t.Fatal(err)
	}
	_, err = sys.Service.CancelTask(ctx, dispatch.CancelRequest{ID: tk.ID, Reason: dispatch.CancelCustomerRequest, ETag: `"99"`})
	apperrtest.WantCode(t, "stale etag", err, apperr.Aborted)
	_, err = sys.Service.CancelTask(dispatchtest.CourierUser(uuid.NewString()), dispatch.CancelRequest{ID: tk.ID, Reason: dispatch.CancelOther})
	apperrtest.WantCode(t, "courier cancels", err, apperr.PermissionDenied)
	_, err = sys.Service.CancelTask(dispatchtest.Customer(uuid.NewString()), dispatch.CancelRequest{ID: tk.ID, Reason: dispatch.CancelOther})
	apperrtest.WantCode(t, "another customer cancels", err, apperr.NotFound)

	c := sys.AddCourier(t, dispatchtest.Berlin, geo.Bicycle, true)
	if _, err := sys.Service.AssignTask(dispatchtest.Dispatcher(), dispatch.AssignRequest{ID: tk.ID, CourierID: c.ID}); err != nil {
		t.Fatal(err)
	}
	got, err := sys.Service.CancelTask(ctx, dispatch.CancelRequest{ID: tk.ID, Reason: dispatch.CancelCustomerRequest, Comment: "changed my mind"})
	if err != nil {
		t.Fatal(err)
	}
	if got.State != dispatch.StateCancelled || got.CancelReason != dispatch.CancelCustomerRequest || got.FinishTime.IsZero() || got.CourierID != c.ID {
		t.Fatalf("cancelled = %+v", got)
	}
	again, err := sys.Service.CancelTask(ctx, dispatch.CancelRequest{ID: tk.ID, Reason: dispatch.CancelOther})
	if err != nil || again.Version != got.Version {
		t.Fatalf("second cancel = version %d, %v; want unchanged version %d", again.Version, err, got.Version)
	}
	// The holder is told and released (the release job runs on River).
	ds, err := sys.Store.Deliveries(context.Background(), c.ID, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 2 || ds[0].Reason != dispatch.NoticeAssigned || ds[1].Reason != dispatch.NoticeCancelled {
		t.Fatalf("courier deliveries %+v, want assigned then cancelled", ds)
	}
	waitFor(t, "the claim released", func() bool {
		_, held := sys.Couriers.Claims()[tk.ID]
		return !held && sys.Couriers.Calls("Release") > 0
	})
}

// A CancelTask or AssignTask sent again with the etag of its first attempt, whose answer was lost, succeeds
// with the task as it is when the first attempt's change is the only one since that etag; any other
// change in between (another caller's, a different request's, a later one) still answers ABORTED.
func TestRetryWithTheFirstAttemptsETag(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true})
	cust := uuid.NewString()
	ctx := dispatchtest.Customer(cust)
	otherDispatcher := auth.WithPrincipal(context.Background(), auth.Principal{Kind: auth.User, Subject: uuid.NewString(), Roles: []string{auth.RoleDispatcher}})
	newTask := func() dispatch.Task {
		t.Helper()
		tk, err := sys.Service.CreateTask(ctx, dispatchtest.Request(uuid.NewString(), dispatchtest.Berlin, ""))
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}

	// Cancel, retried.
	tk := newTask()
	req := dispatch.CancelRequest{ID: tk.ID, Reason: dispatch.CancelCustomerRequest, Comment: "changed my mind", ETag: tk.ETag()}
	first, err := sys.Service.CancelTask(ctx, req)
	if err != nil || first.State != dispatch.StateCancelled || first.Version != tk.Version+1 {
		t.Fatalf("cancel = %+v, %v", first, err)
	}
	again, err := sys.Service.CancelTask(ctx, req)
	if err != nil || again.State != dispatch.StateCancelled || again.Version != first.Version || again.CancelReason != dispatch.CancelCustomerRequest {
		t.Fatalf("retried cancel = version %d %s, %v; want the cancelled task, version %d", again.Version, again.State, err, first.Version)
	}
	for name, r := range map[string]dispatch.CancelRequest{
		"another reason":  {ID: tk.ID, Reason: dispatch.CancelDuplicate, Comment: req.Comment, ETag: req.ETag},
		"another comment": {ID: tk.ID, Reason: req.Reason, Comment: "oops", ETag: req.ETag},
	} {
		_, err := sys.Service.CancelTask(ctx, r)
		apperrtest.WantCode(t, "cancel with the first etag and "+name, err, apperr.Aborted)
	}
	_, err = sys.Service.CancelTask(dispatchtest.Dispatcher(), req)
	apperrtest.WantCode(t, "another caller's cancel with the first etag", err, apperr.Aborted)

	// Another caller cancelled in between, exactly as asked: still a conflict.
	tk = newTask()
	if _, err := sys.Service.CancelTask(dispatchtest.Dispatcher(), dispatch.CancelRequest{ID: tk.ID, Reason: dispatch.CancelCustomerRequest}); err != nil {
		t.Fatal(err)
	}
	_, err = sys.Service.CancelTask(ctx, dispatch.CancelRequest{ID: tk.ID, Reason: dispatch.CancelCustomerRequest, ETag: tk.ETag()})
	apperrtest.WantCode(t, "cancel after another caller's", err, apperr.Aborted)

	// Assign, retried: the courier's only capacity is this task's now, which a new assignment would refuse.
	tk = newTask()
	c := sys.AddCourier(t, dispatchtest.Berlin, geo.Car, true)
	areq := dispatch.AssignRequest{ID: tk.ID, CourierID: c.ID, Comment: "closest", ETag: tk.ETag()}
	assignedTask, err := sys.Service.AssignTask(dispatchtest.Dispatcher(), areq)
	if err != nil || assignedTask.Version != tk.Version+1 {
		t.Fatalf("assign = %+v, %v", assignedTask, err)
	}
	waitFor(t, "the claim", func() bool { return sys.Couriers.Claims()[tk.ID] == c.ID })
	retriedTask, err := sys.Service.AssignTask(dispatchtest.Dispatcher(), areq)
	if err != nil || retriedTask.Version != assignedTask.Version || retriedTask.CourierID != c.ID {
		t.Fatalf("retried assign = version %d courier %s, %v; want version %d", retriedTask.Version, retriedTask.CourierID, err, assignedTask.Version)
	}
	// Another dispatcher's call is not the retry: it is checked as a new assignment, and the courier,
	// busy with the task now, cannot take it.
	_, err = sys.Service.AssignTask(otherDispatcher, areq)
	apperrtest.WantCode(t, "another dispatcher's assign with the first etag", err, apperr.FailedPrecondition)
	d := sys.AddCourier(t, dispatchtest.Berlin, geo.Car, true)
	_, err = sys.Service.AssignTask(dispatchtest.Dispatcher(), dispatch.AssignRequest{ID: tk.ID, CourierID: d.ID, Comment: "closest", ETag: areq.ETag})
	apperrtest.WantCode(t, "assign to another courier with the first etag", err, apperr.Aborted)
	// A later change (the pickup) makes the first etag stale for good.
	if r := sys.Service.Execute(c.Ctx, c.ID, "p1", dispatch.Command{Pickup: &dispatch.PickupCmd{TaskID: tk.ID}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	_, err = sys.Service.AssignTask(dispatchtest.Dispatcher(), areq)
	apperrtest.WantCode(t, "retried assign after the pickup", err, apperr.FailedPrecondition)
}

func TestCancelAfterPickupIsRefused(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true})
	tk, c := assigned(t, sys)
	res := sys.Service.Execute(c.Ctx, c.ID, "cmd-1", dispatch.Command{Pickup: &dispatch.PickupCmd{TaskID: tk.ID}})
	if res.Err != nil {
		t.Fatalf("pickup: %+v", res.Err)
	}
	_, err := sys.Service.CancelTask(dispatchtest.Dispatcher(), dispatch.CancelRequest{ID: tk.ID, Reason: dispatch.CancelOther})
	apperrtest.WantCode(t, "cancel after pickup", err, apperr.FailedPrecondition)
}

// assigned creates a task and has a dispatcher assign it to a new connected courier.
func assigned(t *testing.T, sys *dispatchtest.System) (dispatch.Task, dispatchtest.Courier) {
	t.Helper()
	tk, err := sys.Service.CreateTask(dispatchtest.Customer(uuid.NewString()), dispatchtest.Request(uuid.NewString(), dispatchtest.Berlin, ""))
	if err != nil {
		t.Fatal(err)
	}
	c := sys.AddCourier(t, dispatchtest.Berlin, geo.Car, true)
	tk, err = sys.Service.AssignTask(dispatchtest.Dispatcher(), dispatch.AssignRequest{ID: tk.ID, CourierID: c.ID, Comment: "closest"})
	if err != nil {
		t.Fatal(err)
	}
	return tk, c
}

func TestAssignTask(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true})
	tk, c := assigned(t, sys)
	if tk.State != dispatch.StateAssigned || tk.CourierID != c.ID || tk.AssignTime.IsZero() {
		t.Fatalf("assigned = %+v", tk)
	}
	exp, err := sys.Service.ExplainAssignment(dispatchtest.Dispatcher(), tk.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(exp.Decisions) != 1 || exp.Decisions[0].Trigger != dispatch.TriggerOverride || exp.Decisions[0].Outcome != dispatch.OutcomeDispatcherAssigned ||
		exp.Decisions[0].Winner != c.ID || exp.Decisions[0].Rationale != "assigned by a dispatcher: closest" {
		t.Fatalf("explanation %+v", exp)
	}
	waitFor(t, "the claim", func() bool { return sys.Couriers.Claims()[tk.ID] == c.ID })

	// Same courier again: unchanged.
	same, err := sys.Service.AssignTask(dispatchtest.Dispatcher(), dispatch.AssignRequest{ID: tk.ID, CourierID: c.ID})
	if err != nil || same.Version != tk.Version {
		t.Fatalf("reassign to the holder = version %d, %v; want %d", same.Version, err, tk.Version)
	}
	// Another courier: the first is released and told.
	d := sys.AddCourier(t, dispatchtest.Berlin, geo.Car, true)
	moved, err := sys.Service.AssignTask(dispatchtest.Dispatcher(), dispatch.AssignRequest{ID: tk.ID, CourierID: d.ID, ETag: tk.ETag()})
	if err != nil || moved.CourierID != d.ID {
		t.Fatalf("reassign = %+v, %v", moved, err)
	}
	waitFor(t, "the claim moved", func() bool { return sys.Couriers.Claims()[tk.ID] == d.ID })
	ds, err := sys.Store.Deliveries(context.Background(), c.ID, 0, 10)
	if err != nil || len(ds) != 2 || ds[1].Reason != dispatch.NoticeReassigned {
		t.Fatalf("first courier's deliveries %+v, %v", ds, err)
	}

	// The former holder still reads the task, but not who holds it now.
	if got, err := sys.Service.GetTask(c.Ctx, tk.ID, dispatch.ViewFull); err != nil || got.CourierID != "" {
		t.Fatalf("former holder's read: courier %q, %v; want none", got.CourierID, err)
	}
	if got, err := sys.Service.GetTask(d.Ctx, tk.ID, dispatch.ViewFull); err != nil || got.CourierID != d.ID {
		t.Fatalf("holder's read: courier %q, %v; want %s", got.CourierID, err, d.ID)
	}

	errs := []struct {
		name string
		ctx  context.Context
		req  dispatch.AssignRequest
		code apperr.Code
	}{
		{"stale etag", dispatchtest.Dispatcher(), dispatch.AssignRequest{ID: tk.ID, CourierID: c.ID, ETag: tk.ETag()}, apperr.Aborted},
		{"missing courier", dispatchtest.Dispatcher(), dispatch.AssignRequest{ID: tk.ID, CourierID: uuid.NewString()}, apperr.NotFound},
		{"missing task", dispatchtest.Dispatcher(), dispatch.AssignRequest{ID: uuid.NewString(), CourierID: c.ID}, apperr.NotFound},
		{"customer", dispatchtest.Customer(uuid.NewString()), dispatch.AssignRequest{ID: tk.ID, CourierID: c.ID}, apperr.PermissionDenied},
	}
	for _, e := range errs {
		_, err := sys.Service.AssignTask(e.ctx, e.req)
		apperrtest.WantCode(t, e.name, err, e.code)
	}
	off := sys.AddCourier(t, dispatchtest.Berlin, geo.Car, true)
	sys.Couriers.SetStatus(off.ID, dispatch.CourierOffline)
	_, err = sys.Service.AssignTask(dispatchtest.Dispatcher(), dispatch.AssignRequest{ID: tk.ID, CourierID: off.ID})
	apperrtest.WantCode(t, "offline courier", err, apperr.FailedPrecondition)
	walker := sys.AddCourier(t, dispatchtest.Berlin, geo.Walking, true)
	big, err := sys.Service.CreateTask(dispatchtest.Customer(uuid.NewString()), func() dispatch.CreateRequest {
		r := dispatchtest.Request("big", dispatchtest.Berlin, "")
		r.Size = dispatch.SizeLarge
		return r
	}())
	if err != nil {
		t.Fatal(err)
	}
	_, err = sys.Service.AssignTask(dispatchtest.Dispatcher(), dispatch.AssignRequest{ID: big.ID, CourierID: walker.ID})
	apperrtest.WantCode(t, "walker for a large parcel", err, apperr.FailedPrecondition)
	sys.Couriers.SetDown(true)
	_, err = sys.Service.AssignTask(dispatchtest.Dispatcher(), dispatch.AssignRequest{ID: big.ID, CourierID: walker.ID})
	apperrtest.WantCode(t, "courier service down", err, apperr.Unavailable)
}

// TestAssignTaskRefusesCourierWhoMayNotWork: a dispatcher cannot give a task to a courier whose account
// is suspended or deleted, or no longer has the courier role (AssignTask: "FAILED_PRECONDITION when ...
// the courier cannot take it"). The courier service still reports such a courier AVAILABLE with free
// capacity (a profile outlives its user's suspension), so the task used to sit ASSIGNED to someone who
// cannot sign in. The task is left as it was, nothing is claimed, and once the account is active again
// the same call succeeds.
func TestAssignTaskRefusesCourierWhoMayNotWork(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true})
	tk, holder := assigned(t, sys)
	waitFor(t, "the holder's claim", func() bool { return sys.Couriers.Claims()[tk.ID] == holder.ID })
	c := sys.AddCourier(t, dispatchtest.Berlin, geo.Car, true)
	refusals := []struct {
		name    string
		state   auth.SubjectState
		message string
	}{
		{"suspended", auth.SubjectState{Roles: []string{auth.RoleCourier}}, "courier " + c.ID + " cannot take tasks: their account is suspended or deleted"},
		{"deleted", auth.SubjectState{}, "courier " + c.ID + " cannot take tasks: their account is suspended or deleted"},
		{"no longer a courier", auth.SubjectState{Active: true, Roles: []string{auth.RoleCustomer}}, "courier " + c.ID + " cannot take tasks: their account no longer has the courier role"},
	}
	for _, r := range refusals {
		sys.Accounts.Set(c.UserID, r.state)
		_, err := sys.Service.AssignTask(dispatchtest.Dispatcher(), dispatch.AssignRequest{ID: tk.ID, CourierID: c.ID})
		apperrtest.WantCode(t, "AssignTask to a courier "+r.name, err, apperr.FailedPrecondition)
		if got := apperr.MessageOf(err); got != r.message {
			t.Errorf("AssignTask to a courier %s: message %q, want %q", r.name, got, r.message)
		}
	}
	sys.Accounts.SetDown(true)
	_, err := sys.Service.AssignTask(dispatchtest.Dispatcher(), dispatch.AssignRequest{ID: tk.ID, CourierID: c.ID})
	apperrtest.WantCode(t, "AssignTask while the accounts cannot be read", err, apperr.Unavailable)
	sys.Accounts.SetDown(false)

	got, err := sys.Service.GetTask(dispatchtest.Dispatcher(), tk.ID, dispatch.ViewFull)
	if err != nil || got.State != dispatch.StateAssigned || got.CourierID != holder.ID || got.Version != tk.Version {
		t.Fatalf("task after the refusals = %s held by %s at version %d, %v; want %s held by %s at version %d",
			got.State, got.CourierID, got.Version, err, dispatch.StateAssigned, holder.ID, tk.Version)
	}
	if n := sys.Couriers.Calls("Claim"); n != 1 {
		t.Errorf("Claim calls = %d, want 1 (the holder's only)", n)
	}

	sys.Accounts.Set(c.UserID, auth.SubjectState{Active: true, Roles: []string{auth.RoleCourier}})
	moved, err := sys.Service.AssignTask(dispatchtest.Dispatcher(), dispatch.AssignRequest{ID: tk.ID, CourierID: c.ID})
	if err != nil || moved.CourierID != c.ID {
		t.Fatalf("AssignTask after the reactivation = held by %s, %v; want held by %s", moved.CourierID, err, c.ID)
	}
}

func TestExplainAssignmentErrors(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true})
	tk, err := sys.Service.CreateTask(dispatchtest.Customer(uuid.NewString()), dispatchtest.Request("e-1", dispatchtest.Berlin, ""))
	if err != nil {
		t.Fatal(err)
	}
	_, err = sys.Service.ExplainAssignment(dispatchtest.Customer(tk.CustomerID), tk.ID)
	apperrtest.WantCode(t, "customer", err, apperr.PermissionDenied)
	_, err = sys.Service.ExplainAssignment(dispatchtest.Dispatcher(), uuid.NewString())
	apperrtest.WantCode(t, "missing task", err, apperr.NotFound)
	exp, err := sys.Service.ExplainAssignment(dispatchtest.Dispatcher(), tk.ID)
	if err != nil || exp.State != dispatch.StatePending || len(exp.Decisions) != 0 {
		t.Fatalf("explanation before the engine = %+v, %v", exp, err)
	}
}

func TestCourierOverview(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true})
	tk, c := assigned(t, sys)
	ov, err := sys.Service.CourierOverview(c.Ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if ov.Courier.ID != c.ID || len(ov.Tasks) != 1 || ov.Tasks[0].ID != tk.ID || len(ov.Offers) != 0 {
		t.Fatalf("overview %+v", ov)
	}
	other := sys.AddCourier(t, dispatchtest.Berlin, geo.Car, true)
	_, err = sys.Service.CourierOverview(other.Ctx, c.ID)
	apperrtest.WantCode(t, "another courier's overview", err, apperr.NotFound)
	_, err = sys.Service.CourierOverview(dispatchtest.Customer(uuid.NewString()), c.ID)
	apperrtest.WantCode(t, "customer", err, apperr.PermissionDenied)
	_, err = sys.Service.CourierOverview(dispatchtest.Dispatcher(), uuid.NewString())
	apperrtest.WantCode(t, "missing courier", err, apperr.NotFound)
	sys.Couriers.SetDown(true)
	_, err = sys.Service.CourierOverview(dispatchtest.Dispatcher(), c.ID)
	apperrtest.WantCode(t, "courier service down", err, apperr.Unavailable)
}

// waitFor polls cond until it holds, failing after a generous hang guard.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never happened: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var _ = auth.RoleAdmin

// TestStaffCreateTasksForActiveCustomersOnly: a dispatcher (or a partner system) creating a task must name
// an active customer account: an unknown id, a courier's, a dispatcher's, a suspended or deleted
// customer's would make a task no customer can see. Nothing is created then; the accounts being
// unreadable is Unavailable (retryable); a customer creating their own task is not checked.
func TestStaffCreateTasksForActiveCustomersOnly(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true})
	customer, courier, dispatcher := uuid.NewString(), uuid.NewString(), uuid.NewString()
	sys.Accounts.Set(customer, auth.SubjectState{Active: true, Roles: []string{auth.RoleCustomer}})
	sys.Accounts.Set(courier, auth.SubjectState{Active: true, Roles: []string{auth.RoleCourier}})
	sys.Accounts.Set(dispatcher, auth.SubjectState{Active: true, Roles: []string{auth.RoleDispatcher}})
	unknown := uuid.NewString()
	sys.Accounts.Set(unknown, auth.SubjectState{}) // what Subjects answers for a user identity does not know
	suspended := uuid.NewString()
	sys.Accounts.Set(suspended, auth.SubjectState{Roles: []string{auth.RoleCustomer}})
	service := auth.WithPrincipal(context.Background(), auth.Principal{Kind: auth.Service, Subject: "partner"})

	for i, who := range []struct{ name, id string }{
		{"an unknown user", unknown}, {"a courier", courier}, {"a dispatcher", dispatcher}, {"a suspended customer", suspended},
	} {
		for _, caller := range []struct {
			name string
			ctx  context.Context
		}{{"dispatcher", dispatchtest.Dispatcher()}, {"partner system", service}} {
			_, err := sys.Service.CreateTask(caller.ctx, dispatchtest.Request(fmt.Sprintf("for-%d", i), dispatchtest.Berlin, who.id))
			apperrtest.WantCode(t, caller.name+" creating a task for "+who.name, err, apperr.FailedPrecondition)
			if got, want := apperr.MessageOf(err), "customer_id "+who.id+" is not an active customer account"; got != want {
				t.Errorf("%s creating a task for %s: message %q, want %q", caller.name, who.name, got, want)
			}
		}
	}
	if n, err := sys.Store.CountTasks(context.Background(), dispatch.TaskFilter{}); err != nil || n != 0 {
		t.Fatalf("tasks after the refusals = %d, %v; want 0", n, err)
	}

	sys.Accounts.SetDown(true)
	_, err := sys.Service.CreateTask(dispatchtest.Dispatcher(), dispatchtest.Request("down", dispatchtest.Berlin, customer))
	apperrtest.WantCode(t, "CreateTask while the accounts cannot be read", err, apperr.Unavailable)
	// A customer's own account was checked by the authenticator: nothing more to read.
	own, err := sys.Service.CreateTask(dispatchtest.Customer(customer), dispatchtest.Request("own", dispatchtest.Berlin, ""))
	if err != nil || own.CustomerID != customer {
		t.Fatalf("customer's own create while the accounts cannot be read = %+v, %v", own.CustomerID, err)
	}
	sys.Accounts.SetDown(false)

	tk, err := sys.Service.CreateTask(dispatchtest.Dispatcher(), dispatchtest.Request("ok", dispatchtest.Berlin, customer))
	if err != nil || tk.CustomerID != customer {
		t.Fatalf("dispatcher's create for an active customer = %q, %v; want customer %s", tk.CustomerID, err, customer)
	}
	if _, err := sys.Service.GetTask(dispatchtest.Customer(customer), tk.ID, dispatch.ViewBasic); err != nil {
		t.Fatalf("the customer reads the task: %v", err)
	}
}

// TestCreateTaskCapsOpenTasksPerCustomer: a customer may hold MaxOpenTasks open tasks (UNASSIGNABLE
// counts: it is not final); the next create is ResourceExhausted, also when many arrive at once, until
// one of them ends. A repeated request is still answered with its task at the cap. Another customer is
// not affected.
func TestCreateTaskCapsOpenTasksPerCustomer(t *testing.T) {
	const max = 4
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true, Options: dispatch.Options{MaxOpenTasks: max}})
	cust := uuid.NewString()
	ctx := dispatchtest.Customer(cust)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		made    []dispatch.Task
		refused int
	)
	for i := range 12 {
		wg.Go(func() {
			tk, err := sys.Service.CreateTask(ctx, dispatchtest.Request(fmt.Sprintf("cap-%d", i), dispatchtest.Berlin, ""))
			mu.Lock()
			defer mu.Unlock()
			switch apperr.CodeOf(err) {
			case "":
				made = append(made, tk)
			case apperr.ResourceExhausted:
				refused++
				if got, want := apperr.MessageOf(err), "customer "+cust+" already has 4 open tasks, the most allowed: wait for some to finish, or cancel some"; got != want {
					t.Errorf("refusal message %q, want %q", got, want)
				}
			default:
				t.Errorf("concurrent CreateTask: %v", err)
			}
		})
	}
	wg.Wait()
	if len(made) != max || refused != 12-max {
		t.Fatalf("12 concurrent creates = %d made, %d refused; want %d, %d", len(made), refused, max, 12-max)
	}
	// At the cap, a repeated request is answered with its task.
	again, err := sys.Service.CreateTask(ctx, dispatchtest.Request(made[0].RequestID, dispatchtest.Berlin, ""))
	if err != nil || again.ID != made[0].ID {
		t.Fatalf("repeated request at the cap = %s, %v; want task %s", again.ID, err, made[0].ID)
	}
	if _, err := sys.Service.CreateTask(dispatchtest.Customer(uuid.NewString()), dispatchtest.Request("other", dispatchtest.Berlin, "")); err != nil {
		t.Fatalf("another customer's create: %v", err)
	}
	// A dispatcher's create for the customer counts the same.
	_, err = sys.Service.CreateTask(dispatchtest.Dispatcher(), dispatchtest.Request("by-dispatcher", dispatchtest.Berlin, cust))
	apperrtest.WantCode(t, "dispatcher's create for a customer at the cap", err, apperr.ResourceExhausted)

	if _, err := sys.Service.CancelTask(ctx, dispatch.CancelRequest{ID: made[1].ID, Reason: dispatch.CancelCustomerRequest}); err != nil {
		t.Fatal(err)
	}
	if _, err := sys.Service.CreateTask(ctx, dispatchtest.Request("after-cancel", dispatchtest.Berlin, "")); err != nil {
		t.Fatalf("create after a cancellation: %v", err)
	}
	_, err = sys.Service.CreateTask(ctx, dispatchtest.Request("over-again", dispatchtest.Berlin, ""))
	apperrtest.WantCode(t, "create at the cap again", err, apperr.ResourceExhausted)
}
