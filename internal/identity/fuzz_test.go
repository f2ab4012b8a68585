package identity_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"lastmile/internal/identity"
	"lastmile/internal/identity/identitytest"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
)

// fuzzStatuses are the user statuses FuzzListUsersPageToken filters by: every defined one, none, and
// an undefined one.
var fuzzStatuses = []identity.Status{"", identity.StatusActive, identity.StatusSuspended, identity.StatusDeleted, "bogus"}

// FuzzListUsersPageToken lists users with an arbitrary page token, under one of several filters. The
// token decoder must never panic; a token it refuses is the caller's error (Invalid, naming page_token
// or the filter); a page it serves is in id order, within the page size and matches the filter.
func FuzzListUsersPageToken(f *testing.F) {
	svc := identity.NewService(identitytest.SQLiteStore(f), &identitytest.Hasher{}, &identitytest.Issuer{}, identity.Options{})
	ctx := auth.WithPrincipal(context.Background(), auth.Principal{Kind: auth.User,
		Subject: "00000000-0000-7000-8000-000000000000", Roles: []string{auth.RoleAdmin}})
	for i := range 5 {
		if _, err := svc.CreateUser(ctx, identity.NewUser{Email: fmt.Sprintf("fuzz%d@example.com", i),
			Password: "correct horse battery", DisplayName: fmt.Sprintf("Fuzz %d", i)}); err != nil {
			f.Fatalf("CreateUser() = %v", err)
		}
	}
	first, err := svc.ListUsers(ctx, identity.ListRequest{PageSize: 2})
	if err != nil || first.NextPageToken == "" {
		f.Fatalf("ListUsers(first page) = %+v, %v; want a next page", first, err)
	}
	filtered, err := svc.ListUsers(ctx, identity.ListRequest{PageSize: 1, Filter: identity.Filter{Status: identity.StatusActive, Search: "fuzz"}})
	if err != nil || filtered.NextPageToken == "" {
		f.Fatalf("ListUsers(filtered first page) = %+v, %v; want a next page", filtered, err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	for _, seed := range []struct {
		token  string
		status uint8
		search string
	}{
		{"", 0, ""},
		{first.NextPageToken, 0, ""},
		{first.NextPageToken, 1, ""},
		{filtered.NextPageToken, 1, "fuzz"},
		{filtered.NextPageToken, 1, "FUZZ"},
		{b64([]byte(`{"a":"00000000-0000-7000-8000-000000000000","f":""}`)), 0, ""},
		{b64([]byte(`{"a":"ffffffff-ffff-ffff-ffff-ffffffffffff"}`)), 3, ""},
		{b64([]byte(`{"a":1,"f":null}`)), 0, ""},
		{b64([]byte(`null`)), 0, ""},
		{b64([]byte("\xff\x00")), 2, "\x00"},
		{first.NextPageToken + "=", 0, ""},
		{strings.Repeat("A", 4096), 4, strings.Repeat("x", 101)},
	} {
		f.Add(seed.token, seed.status, seed.search)
	}
	f.Fuzz(func(t *testing.T, token string, status uint8, search string) {
		filter := identity.Filter{Status: fuzzStatuses[int(status)%len(fuzzStatuses)], Search: search}
		page, err := svc.ListUsers(ctx, identity.ListRequest{PageSize: 2, PageToken: token, Filter: filter})
		if err != nil {
			e := apperr.As(err)
			if e == nil || e.Code != apperr.Invalid || len(e.Violations) == 0 {
				t.Fatalf("ListUsers(token %q, filter %+v) error = %v, want an Invalid error with violations", token, filter, err)
			}
			for _, v := range e.Violations {
				if v.Field != "page_token" && v.Field != "status" && v.Field != "search" {
					t.Errorf("ListUsers(token %q) violation on field %q, want page_token, status or search", token, v.Field)
				}
			}
			return
		}
		if len(page.Users) > 2 {
			t.Errorf("ListUsers(token %q) = %d users, want at most the page size 2", token, len(page.Users))
		}
		for i, u := range page.Users {
			if i > 0 && u.ID <= page.Users[i-1].ID {
				t.Errorf("ListUsers(token %q) users out of id order: %s after %s", token, u.ID, page.Users[i-1].ID)
			}
			if filter.Status != "" && u.Status != filter.Status {
				t.Errorf("ListUsers(token %q, status %q) returned a %q user", token, filter.Status, u.Status)
			}
		}
	})
}
