package identity

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"

	"lastmile/internal/platform/apperr"
)

// The checks below are the Store contract's own: the Store refuses what they refuse before it reaches its
// database, so that it answers alike on every engine whatever the engine's column types would let
// through. They cover only what no store can hold; business rules (formats, lengths, who may do what,
// refresh-token rotation) are the Service's.

// MaxStoreLimit bounds the rows one Store.ListUsers or Store.ActivitySince call returns; stores lower
// larger limits to it. It is one more than
// MaxPageSize because the Service reads one row past a page to learn whether another page follows.
const MaxStoreLimit = MaxPageSize + 1

// CheckStorable returns an Invalid error listing why no store can hold u (no id or email, an undefined
// role or status, unset creation or update time), or nil.
func (u User) CheckStorable() error {
	var v []apperr.FieldViolation
	if u.ID == "" {
		v = append(v, apperr.FieldViolation{Field: "id", Description: "must not be empty"})
	}
	if u.Email == "" {
		v = append(v, apperr.FieldViolation{Field: "email", Description: "must not be empty"})
	}
	if !u.Role.Valid() {
		v = append(v, apperr.FieldViolation{Field: "role", Description: fmt.Sprintf("unknown role %q", u.Role)})
	}
	switch u.Status {
	case StatusActive, StatusSuspended, StatusDeleted:
	default:
		v = append(v, apperr.FieldViolation{Field: "status", Description: fmt.Sprintf("unknown status %q", u.Status)})
	}
	if u.CreatedAt.IsZero() {
		v = append(v, apperr.FieldViolation{Field: "created_at", Description: "must be set"})
	}
	if u.UpdatedAt.IsZero() {
		v = append(v, apperr.FieldViolation{Field: "updated_at", Description: "must be set"})
	}
	if len(v) > 0 {
		return apperr.InvalidFields("invalid user", v...)
	}
	return nil
}

// CheckStorableActivity returns an Invalid error for the first entry of activity that no store can
// hold (no id, user or type, unset time), or nil. Seq is not checked: stores assign it.
func CheckStorableActivity(activity []Activity) error {
	for i, a := range activity {
		var v []apperr.FieldViolation
		if a.ID == "" {
			v = append(v, apperr.FieldViolation{Field: fmt.Sprintf("activity[%d].id", i), Description: "must not be empty"})
		}
		if a.UserID == "" {
			v = append(v, apperr.FieldViolation{Field: fmt.Sprintf("activity[%d].user_id", i), Description: "must not be empty"})
		}
		if a.Type == "" {
			v = append(v, apperr.FieldViolation{Field: fmt.Sprintf("activity[%d].type", i), Description: "must not be empty"})
		}
		if a.At.IsZero() {
			v = append(v, apperr.FieldViolation{Field: fmt.Sprintf("activity[%d].at", i), Description: "must be set"})
		}
		if len(v) > 0 {
			return apperr.InvalidFields("invalid activity", v...)
		}
	}
	return nil
}

// CheckStorable returns an Invalid error listing why no store can hold t (a hash that is not SHA-256
// sized, no family or user, unset issue or expiry time), or nil.
func (t RefreshToken) CheckStorable() error {
	var v []apperr.FieldViolation
	if len(t.Hash) != sha256.Size {
		v = append(v, apperr.FieldViolation{Field: "hash", Description: fmt.Sprintf("must be %d bytes (SHA-256), got %d", sha256.Size, len(t.Hash))})
	}
	if t.FamilyID == "" {
		v = append(v, apperr.FieldViolation{Field: "family_id", Description: "must not be empty"})
	}
	if t.UserID == "" {
		v = append(v, apperr.FieldViolation{Field: "user_id", Description: "must not be empty"})
	}
	if t.IssuedAt.IsZero() || t.ExpiresAt.IsZero() {
		v = append(v, apperr.FieldViolation{Field: "issued_at", Description: "issued_at and expires_at must be set"})
	}
	if len(v) > 0 {
		return apperr.InvalidFields("invalid refresh token", v...)
	}
	return nil
}

// CheckStorable returns an Invalid error listing why no store can hold k (no KID, key material that is
// not an Ed25519 seed and public key, unset creation time), or nil.
func (k SigningKey) CheckStorable() error {
	var v []apperr.FieldViolation
	if k.KID == "" {
		v = append(v, apperr.FieldViolation{Field: "kid", Description: "must not be empty"})
	}
	if len(k.PrivateKey) != ed25519.SeedSize {
		v = append(v, apperr.FieldViolation{Field: "private_key", Description: fmt.Sprintf("must be a %d-byte Ed25519 seed", ed25519.SeedSize)})
	}
	if len(k.PublicKey) != ed25519.PublicKeySize {
		v = append(v, apperr.FieldViolation{Field: "public_key", Description: fmt.Sprintf("must be a %d-byte Ed25519 public key", ed25519.PublicKeySize)})
	}
	if k.CreatedAt.IsZero() {
		v = append(v, apperr.FieldViolation{Field: "created_at", Description: "must be set"})
	}
	if len(v) > 0 {
		return apperr.InvalidFields("invalid signing key", v...)
	}
	return nil
}
