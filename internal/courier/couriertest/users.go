// Package couriertest provides fakes of the courier service's peers for its tests: an in-memory Users
// directory standing in for the identity service. The courier service's own store has no fake: tests use
// the real SQLite store.
package couriertest

import (
	"context"
	"sync"

	"lastmile/internal/courier"
	"lastmile/internal/platform/apperr"
)

// Users is an in-memory courier.Users directory.
type Users struct {
	mu    sync.Mutex
	users map[string]courier.UserInfo
}

var _ courier.Users = (*Users)(nil)

// NewUsers returns a directory holding users.
func NewUsers(users ...courier.UserInfo) *Users {
	u := &Users{users: make(map[string]courier.UserInfo)}
	for _, x := range users {
		u.Put(x)
	}
	return u
}

// Put adds or replaces a user.
func (u *Users) Put(x courier.UserInfo) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.users[x.ID] = x
}

// GetUser implements courier.Users. NotFound when the user is unknown.
func (u *Users) GetUser(_ context.Context, id string) (courier.UserInfo, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	x, ok := u.users[id]
	if !ok {
		return courier.UserInfo{}, apperr.Errorf(apperr.NotFound, "user not found")
	}
	return x, nil
}
