package identity_test

import (
	"bytes"
	"crypto/ed25519"
	"testing"
	"time"

	"lastmile/internal/identity"
	"lastmile/internal/platform/apperr/apperrtest"
)

// storeAt is a fixed time for the records below; the checks only ask whether times are set.
var storeAt = time.Date(2026, 5, 4, 10, 30, 0, 0, time.UTC)

func TestUserCheckStorable(t *testing.T) {
	good := identity.User{ID: "u1", Email: "a@example.com", Role: identity.RoleCustomer, Status: identity.StatusActive, CreatedAt: storeAt, UpdatedAt: storeAt}
	tests := []struct {
		name   string
		edit   func(*identity.User)
		fields []string
	}{
		{"valid", func(*identity.User) {}, nil},
		{"deleted", func(u *identity.User) { u.Status = identity.StatusDeleted }, nil},
		{"no id", func(u *identity.User) { u.ID = "" }, []string{"id"}},
		{"no email", func(u *identity.User) { u.Email = "" }, []string{"email"}},
		{"unknown role", func(u *identity.User) { u.Role = "pilot" }, []string{"role"}},
		{"unknown status", func(u *identity.User) { u.Status = "" }, []string{"status"}},
		{"no times", func(u *identity.User) { u.CreatedAt, u.UpdatedAt = time.Time{}, time.Time{} }, []string{"created_at", "updated_at"}},
		{"empty", func(u *identity.User) { *u = identity.User{} }, []string{"id", "email", "role", "status", "created_at", "updated_at"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := good
			tt.edit(&u)
			apperrtest.WantViolations(t, "CheckStorable()", u.CheckStorable(), tt.fields)
		})
	}
}

func TestCheckStorableActivity(t *testing.T) {
	good := identity.Activity{ID: "a1", UserID: "u1", Type: identity.ActivityLogin, At: storeAt}
	tests := []struct {
		name     string
		activity []identity.Activity
		fields   []string
	}{
		{"none", nil, nil},
		{"valid", []identity.Activity{good, good}, nil},
		{"empty second", []identity.Activity{good, {}}, []string{"activity[1].id", "activity[1].user_id", "activity[1].type", "activity[1].at"}},
		{"first bad entry only", []identity.Activity{{ID: "a0", Type: identity.ActivityLogin, At: storeAt}, {}}, []string{"activity[0].user_id"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			apperrtest.WantViolations(t, "CheckStorableActivity()", identity.CheckStorableActivity(tt.activity), tt.fields)
		})
	}
}

func TestRefreshTokenCheckStorable(t *testing.T) {
	good := identity.RefreshToken{Hash: bytes.Repeat([]byte{1}, 32), FamilyID: "f1", UserID: "u1", IssuedAt: storeAt, ExpiresAt: storeAt.Add(time.Hour)}
	tests := []struct {
		name   string
		edit   func(*identity.RefreshToken)
		fields []string
	}{
		{"valid", func(*identity.RefreshToken) {}, nil},
		{"short hash", func(tok *identity.RefreshToken) { tok.Hash = tok.Hash[:31] }, []string{"hash"}},
		{"no family", func(tok *identity.RefreshToken) { tok.FamilyID = "" }, []string{"family_id"}},
		{"no user", func(tok *identity.RefreshToken) { tok.UserID = "" }, []string{"user_id"}},
		{"no expiry", func(tok *identity.RefreshToken) { tok.ExpiresAt = time.Time{} }, []string{"issued_at"}},
		{"empty", func(tok *identity.RefreshToken) { *tok = identity.RefreshToken{} }, []string{"hash", "family_id", "user_id", "issued_at"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := good
			tt.edit(&tok)
			apperrtest.WantViolations(t, "CheckStorable()", tok.CheckStorable(), tt.fields)
		})
	}
}

func TestSigningKeyCheckStorable(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	good := identity.SigningKey{KID: "k1", PrivateKey: priv.Seed(), PublicKey: pub, CreatedAt: storeAt}
	tests := []struct {
		name   string
		edit   func(*identity.SigningKey)
		fields []string
	}{
		{"valid", func(*identity.SigningKey) {}, nil},
		{"no kid", func(k *identity.SigningKey) { k.KID = "" }, []string{"kid"}},
		{"full private key", func(k *identity.SigningKey) { k.PrivateKey = priv }, []string{"private_key"}},
		{"short public key", func(k *identity.SigningKey) { k.PublicKey = pub[:31] }, []string{"public_key"}},
		{"empty", func(k *identity.SigningKey) { *k = identity.SigningKey{} }, []string{"kid", "private_key", "public_key", "created_at"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := good
			tt.edit(&k)
			apperrtest.WantViolations(t, "CheckStorable()", k.CheckStorable(), tt.fields)
		})
	}
}
