package courier_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"lastmile/internal/courier"
	"lastmile/internal/courier/couriertest"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
)

// fuzzFilters are the filters FuzzListCouriersPageToken lists under: none, each field, both, and
// undefined values.
var fuzzFilters = []courier.Filter{
	{},
	{Status: courier.StatusOffline},
	{Mode: courier.ModeWalking},
	{Status: courier.StatusAvailable, Mode: courier.ModeWalking},
	{Status: "bogus"},
	{Mode: "teleport"},
}

// FuzzListCouriersPageToken lists couriers with an arbitrary page token under one of several filters.
// The token decoder must never panic; a token it refuses is the caller's error (Invalid, naming
// page_token or the filter); a page it serves is in id order, within the page size and matches the
// filter.
func FuzzListCouriersPageToken(f *testing.F) {
	users := couriertest.NewUsers()
	svc := courier.NewService(newStore(f), users, courier.Options{})
	ctx := auth.WithPrincipal(context.Background(), auth.Principal{Kind: auth.Service, Subject: "dispatch"})
	if err := svc.Load(ctx); err != nil {
		f.Fatal(err)
	}
	for i := range 5 {
		id := fmt.Sprintf("0190b000-0000-7000-8000-%012d", i)
		users.Put(courier.UserInfo{ID: id, Role: auth.RoleCourier, Status: courier.UserActive, DisplayName: fmt.Sprintf("Courier %d", i)})
		if _, err := svc.RegisterCourier(ctx, courier.RegisterRequest{UserID: id, Mode: courier.ModeWalking, Capacity: 1}); err != nil {
			f.Fatalf("RegisterCourier(%d) = %v", i, err)
		}
	}
	first, err := svc.ListCouriers(ctx, courier.ListRequest{PageSize: 2})
	if err != nil || first.NextPageToken == "" {
		f.Fatalf("ListCouriers(first page) = %+v, %v; want a next page", first, err)
	}
	walking, err := svc.ListCouriers(ctx, courier.ListRequest{PageSize: 2, Filter: fuzzFilters[2]})
	if err != nil || walking.NextPageToken == "" {
		f.Fatalf("ListCouriers(walking, first page) = %+v, %v; want a next page", walking, err)
	}
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, seed := range []struct {
		token  string
		filter uint8
	}{
		{"", 0},
		{first.NextPageToken, 0},
		{first.NextPageToken, 2},
		{walking.NextPageToken, 2},
		{walking.NextPageToken, 3},
		{b64("v1|||0190B000-0000-7000-8000-000000000001"), 0},
		{b64("v1|||0190b000-0000-7000-8000-00000000000"), 0},
		{b64("v1|||0190b000-0000-7000-8000-0000000000001|x"), 0},
		{b64("v1|offline||zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"), 1},
		{b64("v2|||"), 0},
		{b64("v1|\xff||\x00"), 4},
		{first.NextPageToken + "==", 0},
		{strings.Repeat("_", 4096), 5},
	} {
		f.Add(seed.token, seed.filter)
	}
	f.Fuzz(func(t *testing.T, token string, filterIndex uint8) {
		filter := fuzzFilters[int(filterIndex)%len(fuzzFilters)]
		page, err := svc.ListCouriers(ctx, courier.ListRequest{PageSize: 2, PageToken: token, Filter: filter})
		if err != nil {
			e := apperr.As(err)
			if e == nil || e.Code != apperr.Invalid || len(e.Violations) == 0 {
				t.Fatalf("ListCouriers(token %q, filter %+v) error = %v, want an Invalid error with violations", token, filter, err)
			}
			for _, v := range e.Violations {
				if v.Field != "page_token" && v.Field != "status" && v.Field != "transport_mode" {
					t.Errorf("ListCouriers(token %q) violation on field %q, want page_token, status or transport_mode", token, v.Field)
				}
			}
			return
		}
		if len(page.Couriers) > 2 {
			t.Errorf("ListCouriers(token %q) = %d couriers, want at most the page size 2", token, len(page.Couriers))
		}
		for i, c := range page.Couriers {
			if i > 0 && c.ID <= page.Couriers[i-1].ID {
				t.Errorf("ListCouriers(token %q) couriers out of id order: %s after %s", token, c.ID, page.Couriers[i-1].ID)
			}
			if filter.Mode != "" && c.Mode != filter.Mode {
				t.Errorf("ListCouriers(token %q, mode %q) returned a %q courier", token, filter.Mode, c.Mode)
			}
		}
	})
}
