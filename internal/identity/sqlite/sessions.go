package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"lastmile/internal/identity"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/database"
)

const tokenColumns = "hash, family_id, user_id, issued_at, expires_at, used_at, revoked_at"

// CreateRefreshToken implements identity.Store. Invalid for a malformed token, NotFound when its user
// does not exist, Conflict when its hash is already stored.
func (s *Store) CreateRefreshToken(ctx context.Context, t identity.RefreshToken) error {
	if err := t.CheckStorable(); err != nil {
		return err
	}
	return insertToken(ctx, s.db, t)
}

func insertToken(ctx context.Context, db execer, t identity.RefreshToken) error {
	_, err := db.ExecContext(ctx, "INSERT INTO refresh_tokens ("+tokenColumns+") VALUES (?, ?, ?, ?, ?, ?, ?)",
		t.Hash, t.FamilyID, t.UserID, micros(t.IssuedAt), micros(t.ExpiresAt), nullMicros(t.UsedAt), nullMicros(t.RevokedAt))
	if err != nil {
		return mapError(err, "insert refresh token of family "+t.FamilyID)
	}
	return nil
}

func scanToken(row scanner) (identity.RefreshToken, error) {
	var t identity.RefreshToken
	var issued, expires int64
	var used, revoked sql.NullInt64
	if err := row.Scan(&t.Hash, &t.FamilyID, &t.UserID, &issued, &expires, &used, &revoked); err != nil {
		return identity.RefreshToken{}, err
	}
	t.IssuedAt, t.ExpiresAt = fromMicros(issued), fromMicros(expires)
	t.UsedAt, t.RevokedAt = fromNullMicros(used), fromNullMicros(revoked)
	return t, nil
}

// GetRefreshToken implements identity.Store.
func (s *Store) GetRefreshToken(ctx context.Context, hash []byte) (identity.RefreshToken, error) {
	t, err := scanToken(s.db.QueryRowContext(ctx, "SELECT "+tokenColumns+" FROM refresh_tokens WHERE hash = ?", hash))
	if errors.Is(err, sql.ErrNoRows) {
		return identity.RefreshToken{}, apperr.Errorf(apperr.NotFound, "refresh token not found")
	}
	if err != nil {
		return identity.RefreshToken{}, fmt.Errorf("get refresh token: %w", err)
	}
	return t, nil
}

// RotateRefreshToken implements identity.Store. next must belong to the old token's family and user
// (Invalid otherwise); nothing changes unless the whole rotation succeeds.
func (s *Store) RotateRefreshToken(ctx context.Context, oldHash []byte, next identity.RefreshToken, at time.Time) (identity.RefreshToken, error) {
	if err := next.CheckStorable(); err != nil {
		return identity.RefreshToken{}, err
	}
	var old identity.RefreshToken
	err := database.InTx(ctx, s.db, func(tx *sql.Tx) error {
		// The conditions in the UPDATE, not a read before it, decide who wins a race between two
		// rotations: only one of them can flip used_at from NULL.
		var err error
		old, err = scanToken(tx.QueryRowContext(ctx, `UPDATE refresh_tokens SET used_at = ?
			WHERE hash = ? AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ?
			RETURNING `+tokenColumns, micros(at), oldHash, micros(at)))
		if errors.Is(err, sql.ErrNoRows) {
			old, err = scanToken(tx.QueryRowContext(ctx, "SELECT "+tokenColumns+" FROM refresh_tokens WHERE hash = ?", oldHash))
			if errors.Is(err, sql.ErrNoRows) {
				return apperr.Errorf(apperr.NotFound, "refresh token not found")
			}
			if err != nil {
				return fmt.Errorf("rotate refresh token: read old token: %w", err)
			}
			return old.UnusableErr()
		}
		if err != nil {
			return fmt.Errorf("rotate refresh token: %w", err)
		}
		if err := old.CheckSuccessor(next); err != nil {
			return err
		}
		return insertToken(ctx, tx, next)
	})
	if err != nil {
		if apperr.CodeOf(err) == apperr.FailedPrecondition {
			return old, err
		}
		return identity.RefreshToken{}, err
	}
	return old, nil
}

// RevokeFamily implements identity.Store. Tokens revoked earlier keep their revocation time.
func (s *Store) RevokeFamily(ctx context.Context, familyID string, at time.Time) error {
	_, err := s.db.ExecContext(ctx, "UPDATE refresh_tokens SET revoked_at = ? WHERE family_id = ? AND revoked_at IS NULL",
		micros(at), familyID)
	if err != nil {
		return fmt.Errorf("revoke refresh token family %s: %w", familyID, err)
	}
	return nil
}

// RevokeUserTokens implements identity.Store. Tokens revoked earlier keep their revocation time.
func (s *Store) RevokeUserTokens(ctx context.Context, userID string, at time.Time) error {
	_, err := s.db.ExecContext(ctx, "UPDATE refresh_tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
		micros(at), userID)
	if err != nil {
		return fmt.Errorf("revoke refresh tokens of user %s: %w", userID, err)
	}
	return nil
}

// AppendActivity implements identity.Store. Invalid for an incomplete entry, NotFound when an entry's
// user does not exist, Conflict when an entry's ID is already recorded; the entries are appended all or
// none.
func (s *Store) AppendActivity(ctx context.Context, activity []identity.Activity) error {
	if err := identity.CheckStorableActivity(activity); err != nil {
		return err
	}
	if len(activity) == 0 {
		return nil
	}
	return database.InTx(ctx, s.db, func(tx *sql.Tx) error {
		return insertActivity(ctx, tx, activity)
	})
}

func insertActivity(ctx context.Context, tx *sql.Tx, activity []identity.Activity) error {
	for _, a := range activity {
		fields := a.ChangedFields
		if fields == nil {
			fields = []string{}
		}
		changed, err := json.Marshal(fields)
		if err != nil {
			return fmt.Errorf("append activity %s: encode changed fields: %w", a.ID, err)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO activity (id, user_id, type, at, actor_user_id, changed_fields)
			VALUES (?, ?, ?, ?, ?, ?)`,
			a.ID, a.UserID, string(a.Type), micros(a.At), a.ActorUserID, string(changed))
		if err != nil {
			return mapError(err, "append activity "+a.ID)
		}
	}
	return nil
}

// ActivitySince implements identity.Store. Entries without changed fields have nil ChangedFields.
// Invalid when limit is not positive; limits above identity.MaxStoreLimit are lowered to it.
func (s *Store) ActivitySince(ctx context.Context, after int64, limit int) ([]identity.Activity, error) {
	limit, err := identity.StoreLimit(limit)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT seq, id, user_id, type, at, actor_user_id, changed_fields
		FROM activity WHERE seq > ? ORDER BY seq LIMIT ?`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read activity after %d: %w", after, err)
	}
	defer rows.Close()
	var out []identity.Activity
	for rows.Next() {
		var a identity.Activity
		var typ, changed string
		var at int64
		if err := rows.Scan(&a.Seq, &a.ID, &a.UserID, &typ, &at, &a.ActorUserID, &changed); err != nil {
			return nil, fmt.Errorf("read activity after %d: %w", after, err)
		}
		a.Type, a.At = identity.ActivityType(typ), fromMicros(at)
		if err := json.Unmarshal([]byte(changed), &a.ChangedFields); err != nil {
			return nil, fmt.Errorf("read activity %s: decode changed fields: %w", a.ID, err)
		}
		if len(a.ChangedFields) == 0 {
			a.ChangedFields = nil
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read activity after %d: %w", after, err)
	}
	return out, nil
}

// SaveSigningKey implements identity.Store. Saving a known KID changes its RetireAt only: key material
// is immutable. Invalid for a key without KID or with a malformed key.
func (s *Store) SaveSigningKey(ctx context.Context, k identity.SigningKey) error {
	if err := k.CheckStorable(); err != nil {
		return err
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO signing_keys (kid, private_key, public_key, created_at, retire_at)
		VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (kid) DO UPDATE SET retire_at = excluded.retire_at`,
		k.KID, k.PrivateKey, k.PublicKey, micros(k.CreatedAt), nullMicros(k.RetireAt))
	if err != nil {
		return mapError(err, "save signing key "+k.KID)
	}
	return nil
}

// SigningKeys implements identity.Store. A key whose RetireAt is at or before `at` has left.
func (s *Store) SigningKeys(ctx context.Context, at time.Time) ([]identity.SigningKey, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT kid, private_key, public_key, created_at, retire_at FROM signing_keys
		WHERE retire_at IS NULL OR retire_at > ? ORDER BY created_at DESC, kid DESC`, micros(at))
	if err != nil {
		return nil, fmt.Errorf("list signing keys: %w", err)
	}
	defer rows.Close()
	var keys []identity.SigningKey
	for rows.Next() {
		var k identity.SigningKey
		var created int64
		var retire sql.NullInt64
		if err := rows.Scan(&k.KID, &k.PrivateKey, &k.PublicKey, &created, &retire); err != nil {
			return nil, fmt.Errorf("list signing keys: %w", err)
		}
		k.CreatedAt, k.RetireAt = fromMicros(created), fromNullMicros(retire)
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list signing keys: %w", err)
	}
	return keys, nil
}
