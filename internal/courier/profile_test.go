package courier_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"lastmile/internal/courier"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/apperrtest"
	"lastmile/internal/platform/auth"
)

func TestRegisterCourier(t *testing.T) {
	f := newFixture(t, courier.Options{})
	ctx := testContext(t)
	f.users.Put(courier.UserInfo{ID: userID(1), Role: auth.RoleCourier, Status: courier.UserActive, DisplayName: "Ada"})
	f.users.Put(courier.UserInfo{ID: userID(2), Role: auth.RoleCustomer, Status: courier.UserActive, DisplayName: "Bob"})
	f.users.Put(courier.UserInfo{ID: userID(3), Role: auth.RoleCourier, Status: "suspended", DisplayName: "Cy"})
	f.users.Put(courier.UserInfo{ID: userID(4), Role: auth.RoleCourier, Status: courier.UserActive})

	got, err := f.svc.RegisterCourier(dispatcherCtx(ctx), courier.RegisterRequest{
		UserID: userID(1), Mode: courier.ModeBicycle, Capacity: 3})
	if err != nil {
		t.Fatalf("RegisterCourier: %v", err)
	}
	want := courier.Courier{ID: got.ID, UserID: userID(1), DisplayName: "Ada", Mode: courier.ModeBicycle,
		Capacity: 3, Status: courier.StatusOffline, CreatedAt: t0, UpdatedAt: t0, Version: 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("RegisterCourier (-want +got):\n%s", diff)
	}
	if stored, err := f.svc.GetCourier(adminCtx(ctx), courier.Lookup{ID: got.ID}); err != nil || stored != got {
		t.Errorf("GetCourier(new) = %+v, %v, want %+v", stored, err, got)
	}

	// Blanks around a name are dropped; a name of blanks alone is none, so the user's name is taken.
	f.users.Put(courier.UserInfo{ID: userID(5), Role: auth.RoleCourier, Status: courier.UserActive, DisplayName: "Eve"})
	f.users.Put(courier.UserInfo{ID: userID(6), Role: auth.RoleCourier, Status: courier.UserActive, DisplayName: "Fay"})
	f.users.Put(courier.UserInfo{ID: userID(7), Role: auth.RoleCourier, Status: courier.UserActive, DisplayName: "Gus"})
	for _, tt := range []struct {
		user      int
		name, got string
	}{{5, " \t ", "Eve"}, {6, "  Fay B. ", "Fay B."}, {7, "\u200b", "Gus"}} {
		c, err := f.svc.RegisterCourier(adminCtx(ctx), courier.RegisterRequest{
			UserID: userID(tt.user), DisplayName: tt.name, Mode: courier.ModeCar, Capacity: 1})
		if err != nil || c.DisplayName != tt.got {
			t.Errorf("RegisterCourier(display name %q) = %q, %v, want %q", tt.name, c.DisplayName, err, tt.got)
		}
	}

	tests := []struct {
		name string
		ctx  context.Context
		req  courier.RegisterRequest
		want apperr.Code
	}{
		{"already registered", adminCtx(ctx), courier.RegisterRequest{UserID: userID(1), Mode: courier.ModeCar, Capacity: 1}, apperr.Conflict},
		{"unknown user", adminCtx(ctx), courier.RegisterRequest{UserID: userID(9), Mode: courier.ModeCar, Capacity: 1}, apperr.NotFound},
		{"not a courier", adminCtx(ctx), courier.RegisterRequest{UserID: userID(2), Mode: courier.ModeCar, Capacity: 1}, apperr.FailedPrecondition},
		{"suspended", adminCtx(ctx), courier.RegisterRequest{UserID: userID(3), Mode: courier.ModeCar, Capacity: 1}, apperr.FailedPrecondition},
		{"no display name anywhere", adminCtx(ctx), courier.RegisterRequest{UserID: userID(4), Mode: courier.ModeCar, Capacity: 1}, apperr.Invalid},
		{"bad mode", adminCtx(ctx), courier.RegisterRequest{UserID: userID(4), DisplayName: "D", Mode: "rocket", Capacity: 1}, apperr.Invalid},
		{"zero capacity", adminCtx(ctx), courier.RegisterRequest{UserID: userID(4), DisplayName: "D", Mode: courier.ModeCar}, apperr.Invalid},
		{"capacity over 100", adminCtx(ctx), courier.RegisterRequest{UserID: userID(4), DisplayName: "D", Mode: courier.ModeCar, Capacity: 101}, apperr.Invalid},
		{"control character", adminCtx(ctx), courier.RegisterRequest{UserID: userID(4), DisplayName: "D\nE", Mode: courier.ModeCar, Capacity: 1}, apperr.Invalid},
		{"malformed user id", adminCtx(ctx), courier.RegisterRequest{UserID: "u-4", Mode: courier.ModeCar, Capacity: 1}, apperr.Invalid},
		{"courier caller", courierCtx(ctx, 4), courier.RegisterRequest{UserID: userID(4), DisplayName: "D", Mode: courier.ModeCar, Capacity: 1}, apperr.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.svc.RegisterCourier(tt.ctx, tt.req)
			apperrtest.WantCode(t, "RegisterCourier", err, tt.want)
		})
	}
}

// TestObjectLevelReads: a courier sees only their own courier; every other id, existing or not, is
// NotFound, so ids cannot be probed.
func TestObjectLevelReads(t *testing.T) {
	f := newFixture(t, courier.Options{})
	ctx := testContext(t)
	a := f.register(t, 1, courier.ModeBicycle, 2)
	b := f.register(t, 2, courier.ModeCar, 2)

	tests := []struct {
		name string
		ctx  context.Context
		l    courier.Lookup
		want apperr.Code
	}{
		{"own by id", courierCtx(ctx, 1), courier.Lookup{ID: a.ID}, ""},
		{"own by user id", courierCtx(ctx, 1), courier.Lookup{UserID: userID(1)}, ""},
		{"other by id", courierCtx(ctx, 1), courier.Lookup{ID: b.ID}, apperr.NotFound},
		{"other by user id", courierCtx(ctx, 1), courier.Lookup{UserID: userID(2)}, apperr.NotFound},
		{"missing by id", courierCtx(ctx, 1), courier.Lookup{ID: missingID}, apperr.NotFound},
		{"unregistered courier user", courierCtx(ctx, 7), courier.Lookup{ID: a.ID}, apperr.NotFound},
		{"customer", as(ctx, auth.Principal{Kind: auth.User, Subject: userID(8), Roles: []string{auth.RoleCustomer}}), courier.Lookup{ID: a.ID}, apperr.NotFound},
		{"dispatcher any", dispatcherCtx(ctx), courier.Lookup{ID: b.ID}, ""},
		{"dispatcher by user id", dispatcherCtx(ctx), courier.Lookup{UserID: userID(2)}, ""},
		{"dispatcher missing", dispatcherCtx(ctx), courier.Lookup{ID: missingID}, apperr.NotFound},
		{"neither key", dispatcherCtx(ctx), courier.Lookup{}, apperr.Invalid},
		{"both keys", dispatcherCtx(ctx), courier.Lookup{ID: a.ID, UserID: userID(1)}, apperr.Invalid},
		{"malformed id", dispatcherCtx(ctx), courier.Lookup{ID: "nope"}, apperr.Invalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.svc.GetCourier(tt.ctx, tt.l)
			apperrtest.WantCode(t, "GetCourier", err, tt.want)
		})
	}

	for _, id := range []string{b.ID, missingID} {
		_, err := f.svc.GetCourierStatus(courierCtx(ctx, 1), id)
		apperrtest.WantCode(t, "GetCourierStatus(other) as courier", err, apperr.NotFound)
		_, err = f.svc.GetAvailability(courierCtx(ctx, 1), id, t0, t0.Add(time.Hour))
		apperrtest.WantCode(t, "GetAvailability(other) as courier", err, apperr.NotFound)
		_, err = f.svc.IsAvailable(courierCtx(ctx, 1), id, time.Time{})
		apperrtest.WantCode(t, "IsAvailable(other) as courier", err, apperr.NotFound)
	}
}

// TestObjectLevelChanges: a courier cannot change another courier; the refusal is PermissionDenied
// whether or not the target exists.
func TestObjectLevelChanges(t *testing.T) {
	f := newFixture(t, courier.Options{})
	ctx := courierCtx(testContext(t), 1)
	f.register(t, 1, courier.ModeBicycle, 2)
	b := f.register(t, 2, courier.ModeCar, 2)

	for _, id := range []string{b.ID, missingID} {
		_, err := f.svc.SetStatus(ctx, id, courier.StatusAvailable)
		apperrtest.WantCode(t, "SetStatus(other)", err, apperr.PermissionDenied)
		_, err = f.svc.SetAvailability(ctx, id, []time.Time{t0}, true)
		apperrtest.WantCode(t, "SetAvailability(other)", err, apperr.PermissionDenied)
		_, err = f.svc.UpdateCourier(ctx, courier.UpdateRequest{ID: id, Fields: []courier.Field{courier.FieldDisplayName}, DisplayName: "x"})
		apperrtest.WantCode(t, "UpdateCourier(other)", err, apperr.PermissionDenied)
		err = f.svc.NewLocationReport().Add(ctx, id, []courier.Fix{fixAt(52.5, 13.4, t0)})
		apperrtest.WantCode(t, "LocationReport.Add(other)", err, apperr.PermissionDenied)
	}
	got, err := f.svc.GetCourier(adminCtx(testContext(t)), courier.Lookup{ID: b.ID})
	if err != nil || got.Status != courier.StatusOffline || got.DisplayName != "Courier 2" || got.Version != 1 {
		t.Errorf("courier after refused changes = %+v, %v, want unchanged", got, err)
	}
	if snap, err := f.svc.GetCourierStatus(adminCtx(testContext(t)), b.ID); err != nil || snap.HasLocation {
		t.Errorf("GetCourierStatus after refused report = %+v, %v, want no location", snap, err)
	}
}

func TestUpdateCourier(t *testing.T) {
	f := newFixture(t, courier.Options{})
	ctx := testContext(t)
	c := f.available(t, 1, courier.ModeBicycle, 2)

	f.clock.Advance(time.Minute)
	got, err := f.svc.UpdateCourier(courierCtx(ctx, 1), courier.UpdateRequest{
		ID: c.ID, Fields: []courier.Field{courier.FieldDisplayName, courier.FieldMode, courier.FieldCapacity},
		DisplayName: "Ada L.", Mode: courier.ModeScooter, Capacity: 2, Etag: c.Etag()})
	if err != nil {
		t.Fatalf("UpdateCourier(self: name, mode, same capacity): %v", err)
	}
	want := c
	want.DisplayName, want.Mode, want.Status = "Ada L.", courier.ModeScooter, courier.StatusAvailable
	want.UpdatedAt, want.Version = t0.Add(time.Minute), 2
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("UpdateCourier (-want +got):\n%s", diff)
	}

	// A no-op keeps the version, so an etag read before it stays valid.
	same, err := f.svc.UpdateCourier(courierCtx(ctx, 1), courier.UpdateRequest{
		ID: c.ID, Fields: []courier.Field{courier.FieldDisplayName}, DisplayName: "Ada L."})
	if err != nil || same.Version != 2 {
		t.Errorf("UpdateCourier(no-op) = version %d, %v, want 2, nil", same.Version, err)
	}

	if _, _, err := f.svc.ClaimCourier(serviceCtx(ctx, "dispatch"), courier.ClaimRequest{CourierID: c.ID, TaskID: taskID(1)}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.svc.ClaimCourier(serviceCtx(ctx, "dispatch"), courier.ClaimRequest{CourierID: c.ID, TaskID: taskID(2)}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		ctx  context.Context
		req  courier.UpdateRequest
		want apperr.Code
	}{
		{"self raises capacity", courierCtx(ctx, 1), courier.UpdateRequest{ID: c.ID, Fields: []courier.Field{courier.FieldCapacity}, Capacity: 5}, apperr.PermissionDenied},
		{"stale etag", adminCtx(ctx), courier.UpdateRequest{ID: c.ID, Fields: []courier.Field{courier.FieldDisplayName}, DisplayName: "x", Etag: c.Etag()}, apperr.Aborted},
		{"malformed etag", adminCtx(ctx), courier.UpdateRequest{ID: c.ID, Fields: []courier.Field{courier.FieldDisplayName}, DisplayName: "x", Etag: "W/abc"}, apperr.Invalid},
		{"capacity below claims", adminCtx(ctx), courier.UpdateRequest{ID: c.ID, Fields: []courier.Field{courier.FieldCapacity}, Capacity: 1}, apperr.FailedPrecondition},
		{"output-only field", adminCtx(ctx), courier.UpdateRequest{ID: c.ID, Fields: []courier.Field{"status"}}, apperr.Invalid},
		{"id", adminCtx(ctx), courier.UpdateRequest{ID: c.ID, Fields: []courier.Field{courier.FieldDisplayName, "id"}, DisplayName: "x"}, apperr.Invalid},
		{"unknown field", adminCtx(ctx), courier.UpdateRequest{ID: c.ID, Fields: []courier.Field{"displayName"}, DisplayName: "x"}, apperr.Invalid},
		{"no fields", adminCtx(ctx), courier.UpdateRequest{ID: c.ID}, apperr.Invalid},
		{"only the etag", adminCtx(ctx), courier.UpdateRequest{ID: c.ID, Fields: []courier.Field{courier.FieldEtag}, Etag: c.Etag()}, apperr.Invalid},
		{"empty name", adminCtx(ctx), courier.UpdateRequest{ID: c.ID, Fields: []courier.Field{courier.FieldDisplayName}}, apperr.Invalid},
		{"a name of blanks", adminCtx(ctx), courier.UpdateRequest{ID: c.ID, Fields: []courier.Field{courier.FieldDisplayName}, DisplayName: " \t\u3000 "}, apperr.Invalid},
		{"an invisible name", adminCtx(ctx), courier.UpdateRequest{ID: c.ID, Fields: []courier.Field{courier.FieldDisplayName}, DisplayName: "\u200b\u200d"}, apperr.Invalid},
		{"missing courier", adminCtx(ctx), courier.UpdateRequest{ID: missingID, Fields: []courier.Field{courier.FieldDisplayName}, DisplayName: "x"}, apperr.NotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.svc.UpdateCourier(tt.ctx, tt.req)
			apperrtest.WantCode(t, "UpdateCourier", err, tt.want)
		})
	}

	raised, err := f.svc.UpdateCourier(dispatcherCtx(ctx), courier.UpdateRequest{
		ID: c.ID, Fields: []courier.Field{courier.FieldCapacity}, Capacity: 5, Etag: "2"})
	if err != nil || raised.Capacity != 5 || raised.Version != 3 || raised.ActiveTasks != 2 {
		t.Errorf("UpdateCourier(dispatcher raises capacity) = %+v, %v, want capacity 5, version 3, 2 active", raised, err)
	}

	// A name is stored without its leading and trailing blanks.
	renamed, err := f.svc.UpdateCourier(dispatcherCtx(ctx), courier.UpdateRequest{
		ID: c.ID, Fields: []courier.Field{courier.FieldDisplayName}, DisplayName: "  Ada Lovelace \n"})
	if err != nil || renamed.DisplayName != "Ada Lovelace" {
		t.Errorf("UpdateCourier(name with blanks around it) = %q, %v, want \"Ada Lovelace\"", renamed.DisplayName, err)
	}
}

func TestListCouriers(t *testing.T) {
	f := newFixture(t, courier.Options{})
	ctx := dispatcherCtx(testContext(t))
	var bikes []string
	for n := 1; n <= 7; n++ {
		mode := courier.ModeCar
		if n%2 == 1 {
			mode = courier.ModeBicycle
		}
		c := f.register(t, n, mode, 1)
		f.clock.Advance(time.Millisecond) // distinct UUIDv7 timestamps keep registration order
		if mode == courier.ModeBicycle {
			bikes = append(bikes, c.ID)
		}
	}
	filter := courier.Filter{Mode: courier.ModeBicycle}
	var got []string
	token := ""
	for range 10 {
		page, err := f.svc.ListCouriers(ctx, courier.ListRequest{PageSize: 3, PageToken: token, Filter: filter})
		if err != nil {
			t.Fatalf("ListCouriers: %v", err)
		}
		if page.Total != 4 {
			t.Errorf("ListCouriers total = %d, want 4", page.Total)
		}
		for _, c := range page.Couriers {
			got = append(got, c.ID)
		}
		if token = page.NextPageToken; token == "" {
			break
		}
	}
	if diff := cmp.Diff(bikes, got); diff != "" {
		t.Errorf("ListCouriers pages (-want +got):\n%s", diff)
	}

	first, err := f.svc.ListCouriers(ctx, courier.ListRequest{PageSize: 1, Filter: filter})
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.svc.ListCouriers(ctx, courier.ListRequest{PageSize: 1, PageToken: first.NextPageToken})
	apperrtest.WantCode(t, "ListCouriers(token for other filters)", err, apperr.Invalid)
	_, err = f.svc.ListCouriers(ctx, courier.ListRequest{PageToken: "garbage!"})
	apperrtest.WantCode(t, "ListCouriers(malformed token)", err, apperr.Invalid)
	_, err = f.svc.ListCouriers(ctx, courier.ListRequest{PageSize: 1001})
	apperrtest.WantCode(t, "ListCouriers(page size 1001)", err, apperr.Invalid)
	_, err = f.svc.ListCouriers(courierCtx(testContext(t), 1), courier.ListRequest{})
	apperrtest.WantCode(t, "ListCouriers as courier", err, apperr.PermissionDenied)
}

// TestDisplayNameRefusesBidiControls: a courier's display name, shown to dispatchers and customers, may
// not hold the bidirectional embedding, override and isolate controls that make it display as another
// name, when registered or updated, nor be taken from a user whose name holds one. The direction marks
// LRM and RLM, which Arabic and Hebrew names need, are kept.
func TestDisplayNameRefusesBidiControls(t *testing.T) {
	f := newFixture(t, courier.Options{})
	ctx := testContext(t)
	const bidi = "must not contain bidirectional control characters (U+202A to U+202E, U+2066 to U+2069)"
	wantViolation := func(call string, err error, v apperr.FieldViolation, msg string) {
		t.Helper()
		e := apperr.As(err)
		if e == nil || e.Code != apperr.Invalid {
			t.Errorf("%s = %v, want Invalid", call, err)
			return
		}
		if diff := cmp.Diff([]apperr.FieldViolation{v}, e.Violations); diff != "" || e.Message != msg {
			t.Errorf("%s = %q with violations (-want +got):\n%s\nwant message %q", call, e.Message, diff, msg)
		}
	}
	f.users.Put(courier.UserInfo{ID: userID(1), Role: auth.RoleCourier, Status: courier.UserActive, DisplayName: "Ada"})
	f.users.Put(courier.UserInfo{ID: userID(2), Role: auth.RoleCourier, Status: courier.UserActive, DisplayName: "\u202eadA"})

	_, err := f.svc.RegisterCourier(adminCtx(ctx), courier.RegisterRequest{UserID: userID(1), DisplayName: "Ada \u2066x\u2069", Mode: courier.ModeCar, Capacity: 1})
	wantViolation("RegisterCourier(display name with an isolate)", err, apperr.FieldViolation{Field: "display_name", Description: bidi}, "display_name "+bidi)
	_, err = f.svc.RegisterCourier(adminCtx(ctx), courier.RegisterRequest{UserID: userID(2), Mode: courier.ModeCar, Capacity: 1})
	wantViolation("RegisterCourier(the user's name has an override)", err,
		apperr.FieldViolation{Field: "display_name", Description: "is required: the user has no usable display name"},
		"display_name is required: the user has no usable display name")

	c, err := f.svc.RegisterCourier(adminCtx(ctx), courier.RegisterRequest{UserID: userID(1), DisplayName: "\u200fעדה", Mode: courier.ModeCar, Capacity: 1})
	if err != nil || c.DisplayName != "\u200fעדה" {
		t.Fatalf("RegisterCourier(display name with an RLM) = %q, %v; want it kept", c.DisplayName, err)
	}
	_, err = f.svc.UpdateCourier(courierCtx(ctx, 1), courier.UpdateRequest{ID: c.ID, Fields: []courier.Field{courier.FieldDisplayName}, DisplayName: "\u202bAda"})
	wantViolation("UpdateCourier(display name with an embedding)", err, apperr.FieldViolation{Field: "display_name", Description: bidi}, "display_name "+bidi)
	got, err := f.svc.UpdateCourier(courierCtx(ctx, 1), courier.UpdateRequest{ID: c.ID, Fields: []courier.Field{courier.FieldDisplayName}, DisplayName: "Ada\u200e"})
	if err != nil || got.DisplayName != "Ada\u200e" {
		t.Errorf("UpdateCourier(display name with an LRM) = %q, %v; want it kept", got.DisplayName, err)
	}
}

// TestUpdateNamingNothingSaysWhatMayBeNamed: an update whose mask names no field to change (none at all,
// or only the etag) is Invalid with a message saying so and naming the fields that may be changed, the
// words of the contract's own rule (update_courier.mask_not_empty).
func TestUpdateNamingNothingSaysWhatMayBeNamed(t *testing.T) {
	f := newFixture(t, courier.Options{})
	c := f.register(t, 1, courier.ModeBicycle, 2)
	const want = "update_mask names no field to change: name at least one of display_name, transport_mode, capacity"
	for _, fields := range [][]courier.Field{nil, {}, {courier.FieldEtag}} {
		_, err := f.svc.UpdateCourier(adminCtx(testContext(t)), courier.UpdateRequest{ID: c.ID, Fields: fields, Etag: c.Etag()})
		if got := apperr.MessageOf(err); apperr.CodeOf(err) != apperr.Invalid || got != want {
			t.Errorf("UpdateCourier(fields %q) = %v, want Invalid %q", fields, err, want)
		}
	}
}
