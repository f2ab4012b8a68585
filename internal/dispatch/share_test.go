package dispatch_test

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/dispatchtest"
	"lastmile/internal/geo"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/apperrtest"
	"lastmile/internal/platform/auth"
)

// anonymous is a caller without credentials, as a share link's holder usually is.
func anonymous() context.Context { return context.Background() }

// sharedTaskFixture creates a task of a fresh customer with a code proof (so it has a delivery code),
// notes, a dropoff contact and instructions, assigned by a dispatcher to a courier standing near the
// pickup.
func sharedTaskFixture(t *testing.T, sys *dispatchtest.System) (customer string, task dispatch.Task, courier dispatchtest.Courier) {
	t.Helper()
	customer = uuid.NewString()
	req := dispatchtest.Request("share-1", dispatchtest.Berlin, "")
	req.Notes = "fragile: the blue box"
	req.ProofRequirements = []dispatch.ProofRequirement{{Kind: dispatch.ProofCode, Stage: dispatch.StageDropoff}}
	created, err := sys.Service.CreateTask(dispatchtest.Customer(customer), req)
	if err != nil {
		t.Fatalf("CreateTask: %v", err)
	}
	courier = sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 500), geo.Bicycle, false)
	task, err = sys.Service.AssignTask(dispatchtest.Dispatcher(), dispatch.AssignRequest{ID: created.ID, CourierID: courier.ID, Comment: "closest rider"})
	if err != nil {
		t.Fatalf("AssignTask: %v", err)
	}
	if task.DeliveryCode == "" || task.Notes == "" || task.Dropoff.Contact.Name == "" || len(task.History) != 2 {
		t.Fatalf("fixture task = %+v, want a delivery code, notes, a dropoff contact and two history entries", task)
	}
	return customer, task, courier
}

// wantShared is what a share link shows of full, written out field by field.
func wantShared(full dispatch.Task) dispatch.Task {
	w := dispatch.Task{
		ID: full.ID, State: full.State, Priority: full.Priority, Size: full.Size,
		Pickup:            dispatch.Stop{Location: full.Pickup.Location, Address: full.Pickup.Address},
		Dropoff:           dispatch.Stop{Location: full.Dropoff.Location, Address: full.Dropoff.Address},
		ProofRequirements: full.ProofRequirements,
		CreateTime:        full.CreateTime, UpdateTime: full.UpdateTime, AssignTime: full.AssignTime, Version: full.Version,
	}
	for _, h := range full.History {
		w.History = append(w.History, dispatch.StateChange{State: h.State, At: h.At, Actor: h.Actor})
	}
	return w
}

func TestCreateShareLinkWhoMay(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true})
	customer, task, courier := sharedTaskFixture(t, sys)
	now := sys.Clock.Now()
	admin := auth.WithPrincipal(context.Background(), auth.Principal{Kind: auth.User, Subject: uuid.NewString(), Roles: []string{auth.RoleAdmin}})
	for name, ctx := range map[string]context.Context{
		"the customer": dispatchtest.Customer(customer),
		"a dispatcher": dispatchtest.Dispatcher(),
		"an admin":     admin,
	} {
		l, err := sys.Service.CreateShareLink(ctx, strings.ToUpper(task.ID), 0)
		if err != nil {
			t.Fatalf("CreateShareLink as %s: %v", name, err)
		}
		wantExpire := now.Add(dispatch.DefaultShareTTL).UTC().Truncate(time.Second)
		if l.TaskID != task.ID || len(l.Token) != 82 || !l.ExpireTime.Equal(wantExpire) || l.Path != "/track/"+task.ID+"#shareToken="+l.Token {
			t.Errorf("CreateShareLink as %s = %+v, want task %s, an 82-character token, expiry %v and the tracking path", name, l, task.ID, wantExpire)
		}
	}

	cases := []struct {
		name string
		ctx  context.Context
		id   string
		ttl  time.Duration
		want apperr.Code
	}{
		{"another customer", dispatchtest.Customer(uuid.NewString()), task.ID, 0, apperr.NotFound},
		{"the courier holding it", courier.Ctx, task.ID, 0, apperr.PermissionDenied},
		{"an anonymous caller", anonymous(), task.ID, 0, apperr.PermissionDenied},
		{"a service", auth.WithPrincipal(context.Background(), auth.Principal{Kind: auth.Service, Subject: "simulator"}), task.ID, 0, apperr.PermissionDenied},
		{"a missing task", dispatchtest.Dispatcher(), uuid.NewString(), 0, apperr.NotFound},
		{"a malformed id", dispatchtest.Dispatcher(), "task-1", 0, apperr.Invalid},
		{"ttl under a minute", dispatchtest.Customer(customer), task.ID, 59 * time.Second, apperr.Invalid},
		{"ttl over 7 days", dispatchtest.Customer(customer), task.ID, dispatch.MaxShareTTL + time.Second, apperr.Invalid},
		{"negative ttl", dispatchtest.Customer(customer), task.ID, -time.Hour, apperr.Invalid},
	}
	for _, c := range cases {
		_, err := sys.Service.CreateShareLink(c.ctx, c.id, c.ttl)
		apperrtest.WantCode(t, "CreateShareLink as "+c.name, err, c.want)
	}
	for _, ttl := range []time.Duration{dispatch.MinShareTTL, dispatch.MaxShareTTL} {
		l, err := sys.Service.CreateShareLink(dispatchtest.Customer(customer), task.ID, ttl)
		if want := now.Add(ttl).UTC().Truncate(time.Second); err != nil || !l.ExpireTime.Equal(want) {
			t.Errorf("CreateShareLink(ttl %v) = expiry %v, %v; want %v", ttl, l.ExpireTime, err, want)
		}
	}
}

func TestSharedTaskShowsTheShareViewToWhoeverHoldsTheLink(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true})
	customer, task, _ := sharedTaskFixture(t, sys)
	link, err := sys.Service.CreateShareLink(dispatchtest.Customer(customer), task.ID, time.Hour)
	if err != nil {
		t.Fatalf("CreateShareLink: %v", err)
	}
	want := wantShared(task)
	for name, ctx := range map[string]context.Context{
		"anonymous":        anonymous(),
		"another customer": dispatchtest.Customer(uuid.NewString()),
		"the customer":     dispatchtest.Customer(customer),
		"a dispatcher":     dispatchtest.Dispatcher(),
	} {
		got, err := sys.Service.GetSharedTask(ctx, task.ID, link.Token)
		if err != nil {
			t.Fatalf("GetSharedTask as %s: %v", name, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("GetSharedTask as %s mismatch (-want +got):\n%s", name, diff)
		}
	}
	// Spelled out, what the share view must never carry.
	got, _ := sys.Service.GetSharedTask(anonymous(), task.ID, link.Token)
	if got.CustomerID != "" || got.CourierID != "" || got.DeliveryCode != "" || got.Notes != "" || got.RequestID != "" ||
		got.Dropoff.Contact != (dispatch.Contact{}) || got.Dropoff.Instructions != "" || got.Offers != nil || got.Proofs != nil ||
		got.History[1].CourierID != "" || got.History[1].ActorUserID != "" || got.History[1].Comment != "" {
		t.Errorf("GetSharedTask = %+v, want no customer, courier, code, notes, request, contact, instructions, offers, proofs or history details", got)
	}
	if got.State != dispatch.StateAssigned || got.Dropoff.Address != "Dropoff street 1" || got.ETag() != task.ETag() {
		t.Errorf("GetSharedTask = state %s, dropoff %q, etag %s; want assigned, %q, %s", got.State, got.Dropoff.Address, got.ETag(), "Dropoff street 1", task.ETag())
	}
	// Without a token an anonymous caller must sign in.
	_, err = sys.Service.GetTask(anonymous(), task.ID, dispatch.ViewFull)
	apperrtest.WantCode(t, "GetTask anonymously without a token", err, apperr.Unauthenticated)
}

func TestSharedTaskRefusesBadTokens(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true})
	customer, task, _ := sharedTaskFixture(t, sys)
	other, err := sys.Service.CreateTask(dispatchtest.Customer(customer), dispatchtest.Request("share-2", dispatchtest.Berlin, ""))
	if err != nil {
		t.Fatal(err)
	}
	link, err := sys.Service.CreateShareLink(dispatchtest.Customer(customer), task.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherLink, err := sys.Service.CreateShareLink(dispatchtest.Customer(customer), other.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// A link of another deployment: same key id, another secret.
	elsewhere := dispatchtest.Start(t, dispatchtest.Config{NoRun: true})
	_, foreignTask, _ := sharedTaskFixture(t, elsewhere)
	foreign, err := elsewhere.Service.CreateShareLink(dispatchtest.Dispatcher(), foreignTask.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	flip := func(tok string, i int) string {
		b := []byte(tok)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	cases := []struct{ name, id, token string }{
		{"another task's token", task.ID, otherLink.Token},
		{"a token for this task on another task", other.ID, link.Token},
		{"an altered signature", task.ID, flip(link.Token, len(link.Token)-5)},
		{"an altered key id", task.ID, flip(link.Token, 3)},
		{"an altered expiry", task.ID, flip(link.Token, 30)},
		{"another deployment's token", foreignTask.ID, foreign.Token},
		{"a truncated token", task.ID, link.Token[:len(link.Token)-1]},
		{"a token with padding", task.ID, link.Token + "="},
		{"garbage", task.ID, strings.Repeat("x", 82)},
		{"an empty token", task.ID, ""},
	}
	for _, c := range cases {
		_, err := sys.Service.GetSharedTask(anonymous(), c.id, c.token)
		apperrtest.WantCode(t, "GetSharedTask with "+c.name, err, apperr.NotFound)
		err = sys.Service.WatchSharedTask(anonymous(), c.id, c.token, func(u dispatch.TaskUpdate) error {
			t.Errorf("WatchSharedTask with %s sent %+v", c.name, u)
			return nil
		})
		apperrtest.WantCode(t, "WatchSharedTask with "+c.name, err, apperr.NotFound)
	}

	// The link works until its expiry, and not at it.
	sys.Clock.Advance(time.Hour - time.Second)
	if _, err := sys.Service.GetSharedTask(anonymous(), task.ID, link.Token); err != nil {
		t.Errorf("GetSharedTask a second before the expiry = %v, want the task", err)
	}
	sys.Clock.Advance(time.Second)
	_, err = sys.Service.GetSharedTask(anonymous(), task.ID, link.Token)
	apperrtest.WantCode(t, "GetSharedTask at the expiry", err, apperr.NotFound)
	err = sys.Service.WatchSharedTask(anonymous(), task.ID, link.Token, func(dispatch.TaskUpdate) error { return nil })
	apperrtest.WantCode(t, "WatchSharedTask at the expiry", err, apperr.NotFound)
}

func TestShareLinksNeedAKeyStore(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true})
	customer, task, _ := sharedTaskFixture(t, sys)
	link, err := sys.Service.CreateShareLink(dispatchtest.Customer(customer), task.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	off := dispatch.NewService(dispatch.Deps{Store: sys.Store, Couriers: sys.Couriers}, dispatch.Options{Now: sys.Clock.Now})
	_, err = off.CreateShareLink(dispatchtest.Customer(customer), task.ID, time.Hour)
	apperrtest.WantCode(t, "CreateShareLink without share keys", err, apperr.FailedPrecondition)
	_, err = off.GetSharedTask(anonymous(), task.ID, link.Token)
	apperrtest.WantCode(t, "GetSharedTask without share keys", err, apperr.NotFound)
}

func TestWatchSharedTaskSendsTheShareViewWithThePositionAndETA(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{})
	customer, task, _ := sharedTaskFixture(t, sys)
	link, err := sys.Service.CreateShareLink(dispatchtest.Customer(customer), task.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), sessTimeout)
	defer cancel()
	w := startWatch(t, ctx, func(ctx context.Context, send func(dispatch.TaskUpdate) error) error {
		return sys.Service.WatchSharedTask(ctx, task.ID, link.Token, send)
	})
	first := w.recv(t)
	if first.Task == nil {
		t.Fatalf("first update = %q, want the task", describeUpdate(first))
	}
	if diff := cmp.Diff(wantShared(task), *first.Task); diff != "" {
		t.Errorf("first update's task mismatch (-want +got):\n%s", diff)
	}
	wantFix := dispatchtest.Near(dispatchtest.Berlin, 500)
	if first.Fix == nil || first.Fix.Location != wantFix || first.ETA == nil || first.ETA.PickupTime.IsZero() || first.ETA.DropoffTime.IsZero() {
		t.Errorf("first update = %q, want the courier at %v and an ETA to both stops", describeUpdate(first), wantFix)
	}
	cancelled, err := sys.Service.CancelTask(dispatchtest.Customer(customer), dispatch.CancelRequest{ID: task.ID, Reason: dispatch.CancelCustomerRequest, Comment: "not home"})
	if err != nil {
		t.Fatalf("CancelTask: %v", err)
	}
	last := w.recv(t)
	if last.Task == nil {
		t.Fatalf("update after the cancellation = %q, want the task", describeUpdate(last))
	}
	want := wantShared(cancelled)
	want.CancelReason = dispatch.CancelCustomerRequest
	want.FinishTime = cancelled.FinishTime
	if diff := cmp.Diff(want, *last.Task); diff != "" {
		t.Errorf("update after the cancellation mismatch (-want +got):\n%s", diff)
	}
	if err := w.wait(t); err != nil {
		t.Errorf("WatchSharedTask after a final state = %v, want nil", err)
	}
}

func TestWatchSharedTaskEndsWhenTheLinkExpires(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{})
	customer, task, _ := sharedTaskFixture(t, sys)
	link, err := sys.Service.CreateShareLink(dispatchtest.Customer(customer), task.ID, dispatch.MinShareTTL)
	if err != nil {
		t.Fatal(err)
	}
	// A moment before the expiry on the service's clock: the watch opens, then the link runs out.
	sys.Clock.Advance(dispatch.MinShareTTL - 20*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), sessTimeout)
	defer cancel()
	w := startWatch(t, ctx, func(ctx context.Context, send func(dispatch.TaskUpdate) error) error {
		return sys.Service.WatchSharedTask(ctx, task.ID, link.Token, send)
	})
	if first := w.recv(t); first.Task == nil || first.Task.State != dispatch.StateAssigned {
		t.Fatalf("first update = %q, want the assigned task", describeUpdate(first))
	}
	for {
		select {
		case err := <-w.done:
			w.done <- err
			apperrtest.WantCode(t, "WatchSharedTask after the link expired", err, apperr.NotFound)
			return
		case <-w.items: // position and ETA refreshes until the expiry
		case <-ctx.Done():
			t.Fatal("WatchSharedTask did not end when its link expired")
		}
	}
}

func TestShareKeysRotateAndRevoke(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true})
	customer, task, _ := sharedTaskFixture(t, sys)
	ctx := dispatchtest.Customer(customer)
	first, err := sys.Service.CreateShareLink(ctx, task.ID, 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keyID := func(tok string) uint32 {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || len(b) != 61 {
			t.Fatalf("token %q: %d bytes, %v; want 61", tok, len(b), err)
		}
		return binary.BigEndian.Uint32(b[1:5])
	}
	if got := keyID(first.Token); got != 1 {
		t.Fatalf("the first link's key id = %d, want 1", got)
	}
	// An operator adds a newer key: every replica signs with it within a minute.
	if _, err := sys.DB.ExecContext(context.Background(), `INSERT INTO share_keys (id, secret, create_time) VALUES ($1, $2, $3)`,
		2, []byte(strings.Repeat("k", dispatch.ShareKeySize)), sys.Store.Dialect().Time(sys.Clock.Now())); err != nil {
		t.Fatalf("insert share key 2: %v", err)
	}
	sys.Clock.Advance(time.Minute)
	second, err := sys.Service.CreateShareLink(ctx, task.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if got := keyID(second.Token); got != 2 {
		t.Errorf("a link made after the rotation has key id %d, want 2", got)
	}
	for name, tok := range map[string]string{"the first link": first.Token, "the second link": second.Token} {
		if _, err := sys.Service.GetSharedTask(anonymous(), task.ID, tok); err != nil {
			t.Errorf("GetSharedTask with %s after the rotation = %v, want the task", name, err)
		}
	}
	// Deleting the old key revokes the links it signed, within a minute.
	if _, err := sys.DB.ExecContext(context.Background(), `DELETE FROM share_keys WHERE id = 1`); err != nil {
		t.Fatalf("delete share key 1: %v", err)
	}
	sys.Clock.Advance(time.Minute)
	_, err = sys.Service.GetSharedTask(anonymous(), task.ID, first.Token)
	apperrtest.WantCode(t, "GetSharedTask with a link of a deleted key", err, apperr.NotFound)
	if _, err := sys.Service.GetSharedTask(anonymous(), task.ID, second.Token); err != nil {
		t.Errorf("GetSharedTask with the newer key's link = %v, want the task", err)
	}
}

// A share link shows no more of the history than the task's customer sees: not the offers other couriers
// declined (or let expire), nor their hand-backs, even without who.
func TestSharedTaskHistoryIsTheCustomers(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{})
	a := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 100), geo.Bicycle, true)
	b := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 400), geo.Bicycle, true)
	customer := uuid.NewString()
	tk, err := sys.Service.CreateTask(dispatchtest.Customer(customer), dispatchtest.Request(uuid.NewString(), dispatchtest.Berlin, ""))
	if err != nil {
		t.Fatal(err)
	}
	link, err := sys.Service.CreateShareLink(dispatchtest.Customer(customer), tk.ID, time.Hour)
	if err != nil {
		t.Fatalf("CreateShareLink: %v", err)
	}
	history := func(ctx context.Context, token string) string {
		t.Helper()
		var got dispatch.Task
		var err error
		if token != "" {
			got, err = sys.Service.GetSharedTask(ctx, tk.ID, token)
		} else {
			got, err = sys.Service.GetTask(ctx, tk.ID, dispatch.ViewFull)
		}
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, h := range got.History {
			out = append(out, fmt.Sprintf("%s/%s", h.State, h.Actor))
		}
		return strings.Join(out, " ")
	}
	check := func(when, want string) {
		t.Helper()
		if got := history(dispatchtest.Customer(customer), ""); got != want {
			t.Fatalf("the customer's history %s = %s, want %s", when, got, want)
		}
		if got := history(anonymous(), link.Token); got != want {
			t.Errorf("the shared history %s = %s, want the customer's: %s", when, got, want)
		}
	}

	next, _ := declineToNext(t, sys, tk.ID, a, b)
	check("while offered to b after a declined", "pending/customer offered/system")
	if r := sys.Service.Execute(b.Ctx, b.ID, "a1", dispatch.Command{Accept: &dispatch.AcceptCmd{OfferID: next.CurrentOffer().ID}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	check("once b holds it", "pending/customer offered/system assigned/courier")
}
