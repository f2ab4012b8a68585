package identity

import (
	"context"
	"crypto/rand"
	"fmt"

	"lastmile/internal/platform/apperr"
)

// DefaultAdminEmail is the email of the bootstrap admin when none is configured. It is not a credential:
// without a configured password, EnsureAdmin generates one.
const DefaultAdminEmail = "admin@lastmile.local"

// EnsureAdmin creates an admin when no active admin exists, so that a fresh installation can be managed.
// It returns created == false and does nothing else when an active admin exists.
//
// The admin gets email (DefaultAdminEmail when empty) and password. When password is empty, a random one
// is generated (26 characters from crypto/rand, 130 bits) and returned, for the caller to show once;
// there are no default credentials. Replicas starting together may race: the one that loses sees the
// winner's admin and returns created == false.
//
// Errors: Invalid for a malformed email or a password of the wrong length; Conflict when the email
// belongs to a user who is not an active admin (choose another address).
func (s *Service) EnsureAdmin(ctx context.Context, email, password string) (created bool, generatedPassword string, err error) {
	if ok, err := s.hasActiveAdmin(ctx); err != nil || ok {
		return false, "", err
	}
	if email == "" {
		email = DefaultAdminEmail
	}
	if password == "" {
		generatedPassword = rand.Text()
		password = generatedPassword
	}
	u, err := s.newUser(ctx, NewUser{Email: email, Password: password, DisplayName: "Administrator", Role: RoleAdmin}, nil)
	if err != nil {
		return false, "", fmt.Errorf("bootstrap admin: %w", err)
	}
	err = s.store.CreateUser(ctx, u)
	if apperr.CodeOf(err) == apperr.Conflict {
		if ok, herr := s.hasActiveAdmin(ctx); herr != nil || ok {
			return false, "", herr
		}
	}
	if err != nil {
		return false, "", fmt.Errorf("bootstrap admin %s: %w", u.Email, err)
	}
	return true, generatedPassword, nil
}

func (s *Service) hasActiveAdmin(ctx context.Context) (bool, error) {
	n, err := s.store.CountUsers(ctx, Filter{Role: RoleAdmin, Status: StatusActive})
	if err != nil {
		return false, fmt.Errorf("count active admins: %w", err)
	}
	return n > 0, nil
}
