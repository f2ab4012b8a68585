package identity_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"lastmile/internal/identity"
	"lastmile/internal/platform/apperr"
)

// The rules of refresh-token rotation, which Service.RefreshToken applies inside the store's transaction.

func TestRefreshTokenRotate(t *testing.T) {
	now := storeAt
	live := identity.RefreshToken{Hash: bytes.Repeat([]byte{1}, 32), FamilyID: "f1", UserID: "u1", IssuedAt: now.Add(-time.Hour), ExpiresAt: now.Add(time.Hour)}
	next := identity.RefreshToken{Hash: bytes.Repeat([]byte{2}, 32), FamilyID: "f1", UserID: "u1", IssuedAt: now, ExpiresAt: live.ExpiresAt}
	tests := []struct {
		name    string
		edit    func(*identity.RefreshToken)
		next    identity.RefreshToken
		want    identity.TokenChange
		wantErr apperr.Code
		wantMsg string
	}{
		{"live", func(*identity.RefreshToken) {}, next, identity.TokenChange{UsedAt: now, Next: next}, "", ""},
		{"a microsecond before expiry", func(tok *identity.RefreshToken) { tok.ExpiresAt = now.Add(time.Microsecond) }, next,
			identity.TokenChange{UsedAt: now, Next: next}, "", ""},
		{"at expiry", func(tok *identity.RefreshToken) { tok.ExpiresAt = now }, next,
			identity.TokenChange{}, apperr.FailedPrecondition, "refresh token expired"},
		{"after expiry", func(tok *identity.RefreshToken) { tok.ExpiresAt = now.Add(-time.Hour) }, next,
			identity.TokenChange{}, apperr.FailedPrecondition, "refresh token expired"},
		{"revoked", func(tok *identity.RefreshToken) { tok.RevokedAt = now.Add(-time.Minute) }, next,
			identity.TokenChange{}, apperr.FailedPrecondition, "refresh token revoked"},
		{"used: reuse revokes the family", func(tok *identity.RefreshToken) { tok.UsedAt = now.Add(-time.Minute) }, next,
			identity.TokenChange{RevokeFamilyAt: now}, apperr.FailedPrecondition, "refresh token already used"},
		{"used and expired: still reuse", func(tok *identity.RefreshToken) {
			tok.UsedAt, tok.ExpiresAt = now.Add(-2*time.Hour), now.Add(-time.Hour)
		}, next, identity.TokenChange{RevokeFamilyAt: now}, apperr.FailedPrecondition, "refresh token already used"},
		{"used and revoked: still reuse", func(tok *identity.RefreshToken) {
			tok.UsedAt, tok.RevokedAt = now.Add(-2*time.Minute), now.Add(-time.Minute)
		}, next, identity.TokenChange{RevokeFamilyAt: now}, apperr.FailedPrecondition, "refresh token already used"},
		{"next of another family", func(*identity.RefreshToken) {}, identity.RefreshToken{Hash: next.Hash, FamilyID: "f2", UserID: "u1"},
			identity.TokenChange{}, apperr.Invalid, ""},
		{"next with the same hash", func(*identity.RefreshToken) {}, identity.RefreshToken{Hash: live.Hash, FamilyID: "f1", UserID: "u1"},
			identity.TokenChange{}, apperr.Invalid, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := live
			tt.edit(&tok)
			got, err := tok.Rotate(tt.next, now)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Rotate() change mismatch (-want +got):\n%s", diff)
			}
			if code := apperr.CodeOf(err); code != tt.wantErr {
				t.Errorf("Rotate() error = %v (code %q), want code %q", err, code, tt.wantErr)
			}
			if tt.wantMsg != "" && apperr.MessageOf(err) != tt.wantMsg {
				t.Errorf("Rotate() message = %q, want %q", apperr.MessageOf(err), tt.wantMsg)
			}
		})
	}
}

func TestRefreshTokenCheckSuccessor(t *testing.T) {
	old := identity.RefreshToken{Hash: []byte("old"), FamilyID: "f1", UserID: "u1"}
	tests := []struct {
		name string
		next identity.RefreshToken
		want apperr.Code
	}{
		{"successor", identity.RefreshToken{Hash: []byte("new"), FamilyID: "f1", UserID: "u1"}, ""},
		{"same hash", identity.RefreshToken{Hash: []byte("old"), FamilyID: "f1", UserID: "u1"}, apperr.Invalid},
		{"other family", identity.RefreshToken{Hash: []byte("new"), FamilyID: "f2", UserID: "u1"}, apperr.Invalid},
		{"other user", identity.RefreshToken{Hash: []byte("new"), FamilyID: "f1", UserID: "u2"}, apperr.Invalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := apperr.CodeOf(old.CheckSuccessor(tt.next)); got != tt.want {
				t.Errorf("CheckSuccessor() code = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRefreshTokenUnusableErr(t *testing.T) {
	tests := []struct {
		name string
		tok  identity.RefreshToken
		want string
	}{
		{"used and revoked", identity.RefreshToken{UsedAt: storeAt, RevokedAt: storeAt}, "refresh token already used"},
		{"revoked", identity.RefreshToken{RevokedAt: storeAt}, "refresh token revoked"},
		{"neither", identity.RefreshToken{}, "refresh token expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.tok.UnusableErr()
			if got := apperr.CodeOf(err); got != apperr.FailedPrecondition {
				t.Errorf("UnusableErr() code = %q, want %q", got, apperr.FailedPrecondition)
			}
			if got := apperr.MessageOf(err); got != tt.want {
				t.Errorf("UnusableErr() message = %q, want %q", got, tt.want)
			}
		})
	}
}
