package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"lastmile/internal/identity"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/database"
)

const tokenColumns = "hash, family_id, user_id, issued_at, expires_at, used_at, revoked_at"

// CreateRefreshToken implements identity.Store.
func (s *Store) CreateRefreshToken(ctx context.Context, t identity.RefreshToken) error {
	if err := t.CheckStorable(); err != nil {
		return err
	}
	return s.insertToken(ctx, s.db, t)
}

func (s *Store) insertToken(ctx context.Context, q querier, t identity.RefreshToken) error {
	_, err := q.ExecContext(ctx, "INSERT INTO refresh_tokens ("+tokenColumns+") VALUES ($1, $2, $3, $4, $5, $6, $7)",
		t.Hash, t.FamilyID, t.UserID, s.ts(t.IssuedAt), s.ts(t.ExpiresAt), s.nullTS(t.UsedAt), s.nullTS(t.RevokedAt))
	if err != nil {
		return s.e.MapError(err, "insert refresh token of family "+t.FamilyID)
	}
	return nil
}

func scanToken(row scanner) (identity.RefreshToken, error) {
	var t identity.RefreshToken
	err := row.Scan(&t.Hash, &t.FamilyID, &t.UserID, database.ScanTime(&t.IssuedAt), database.ScanTime(&t.ExpiresAt),
		database.ScanTime(&t.UsedAt), database.ScanTime(&t.RevokedAt))
	if err != nil {
		return identity.RefreshToken{}, err
	}
	return t, nil
}

// GetRefreshToken implements identity.Store.
func (s *Store) GetRefreshToken(ctx context.Context, hash []byte) (identity.RefreshToken, error) {
	t, err := scanToken(s.db.QueryRowContext(ctx, "SELECT "+tokenColumns+" FROM refresh_tokens WHERE hash = $1", hash))
	if errors.Is(err, sql.ErrNoRows) {
		return identity.RefreshToken{}, apperr.Errorf(apperr.NotFound, "refresh token not found")
	}
	if err != nil {
		return identity.RefreshToken{}, s.e.MapError(err, "get refresh token")
	}
	return t, nil
}

// UpdateRefreshToken implements identity.Store.
//
// The owner's row is locked first, and every transaction that changes tokens of a user locks it first:
// so the session operations of one user run one after another, and a family revoked after a reuse
// includes a token that a concurrent rotation has just added.
func (s *Store) UpdateRefreshToken(ctx context.Context, hash []byte, change func(identity.RefreshToken, identity.User) (identity.TokenChange, error)) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		owner, err := scanUser(tx.QueryRowContext(ctx, "SELECT "+userColumns+
			" FROM users WHERE id = (SELECT user_id FROM refresh_tokens WHERE hash = $1)"+s.e.LockClause, hash))
		if errors.Is(err, sql.ErrNoRows) {
			return apperr.Errorf(apperr.NotFound, "refresh token not found") // a token's user always exists
		}
		if err != nil {
			return s.e.MapError(err, "update refresh token: lock its user")
		}
		t, err := scanToken(tx.QueryRowContext(ctx, "SELECT "+tokenColumns+" FROM refresh_tokens WHERE hash = $1"+s.e.LockClause, hash))
		if err != nil {
			return s.e.MapError(err, "update refresh token: read it")
		}
		ch, err := change(t, owner)
		if err != nil {
			return err
		}
		return s.writeTokenChange(ctx, tx, t, ch)
	})
}

// writeTokenChange writes ch, decided about t, as part of tx.
func (s *Store) writeTokenChange(ctx context.Context, tx *sql.Tx, t identity.RefreshToken, ch identity.TokenChange) error {
	if ch.Next.Hash != nil {
		if err := ch.Next.CheckStorable(); err != nil {
			return err
		}
	}
	if err := identity.CheckStorableActivity(ch.Activity); err != nil {
		return err
	}
	if !ch.UsedAt.IsZero() {
		if _, err := tx.ExecContext(ctx, "UPDATE refresh_tokens SET used_at = $1 WHERE hash = $2", s.ts(ch.UsedAt), t.Hash); err != nil {
			return s.e.MapError(err, fmt.Sprintf("mark refresh token of family %s used", t.FamilyID))
		}
	}
	if ch.Next.Hash != nil {
		if err := s.insertToken(ctx, tx, ch.Next); err != nil {
			return err
		}
	}
	if !ch.RevokeFamilyAt.IsZero() {
		if err := s.revokeFamily(ctx, tx, t.FamilyID, ch.RevokeFamilyAt); err != nil {
			return err
		}
	}
	if !ch.RevokeUserBefore.IsZero() {
		if _, err := tx.ExecContext(ctx, "UPDATE users SET revoked_before = $1 WHERE id = $2", s.ts(ch.RevokeUserBefore), t.UserID); err != nil {
			return s.e.MapError(err, fmt.Sprintf("revoke access tokens of user %s", t.UserID))
		}
	}
	return s.insertActivity(ctx, tx, ch.Activity)
}

// RevokeFamily implements identity.Store.
func (s *Store) RevokeFamily(ctx context.Context, familyID string, at time.Time) error {
	return s.revokeFamily(ctx, s.db, familyID, at)
}

func (s *Store) revokeFamily(ctx context.Context, q querier, familyID string, at time.Time) error {
	_, err := q.ExecContext(ctx, "UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL",
		s.ts(at), familyID)
	if err != nil {
		return s.e.MapError(err, fmt.Sprintf("revoke refresh token family %s", familyID))
	}
	return nil
}

// DeleteExpiredRefreshTokens implements identity.Store. One statement per batch (through the
// expires_at index), so that a large backlog never holds the writer for long.
func (s *Store) DeleteExpiredRefreshTokens(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, apperr.Errorf(apperr.Invalid, "delete expired refresh tokens: limit %d is not positive", limit)
	}
	res, err := s.db.ExecContext(ctx, `DELETE FROM refresh_tokens WHERE hash IN (
		SELECT hash FROM refresh_tokens WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2)`, s.ts(before), limit)
	if err != nil {
		return 0, s.e.MapError(err, "delete expired refresh tokens")
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, s.e.MapError(err, "delete expired refresh tokens")
	}
	return int(n), nil
}

// RevokeUserTokens implements identity.Store. It locks the user first, as UpdateRefreshToken does, so
// that a token added by a concurrent rotation is revoked as well.
func (s *Store) RevokeUserTokens(ctx context.Context, userID string, at time.Time) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		var id string
		err := tx.QueryRowContext(ctx, "SELECT id FROM users WHERE id = $1"+s.e.LockClause, userID).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return nil // no user, no tokens
		}
		if err != nil {
			return s.e.MapError(err, fmt.Sprintf("revoke refresh tokens of user %s: lock the user", userID))
		}
		_, err = tx.ExecContext(ctx, "UPDATE refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
			s.ts(at), userID)
		if err != nil {
			return s.e.MapError(err, fmt.Sprintf("revoke refresh tokens of user %s", userID))
		}
		return nil
	})
}
