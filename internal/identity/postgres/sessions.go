package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

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
	return insertToken(ctx, s.pool, t)
}

func insertToken(ctx context.Context, db execer, t identity.RefreshToken) error {
	_, err := db.Exec(ctx, "INSERT INTO refresh_tokens ("+tokenColumns+") VALUES ($1, $2, $3, $4, $5, $6, $7)",
		t.Hash, t.FamilyID, t.UserID, ts(t.IssuedAt), ts(t.ExpiresAt), nullTS(t.UsedAt), nullTS(t.RevokedAt))
	if err != nil {
		return mapError(err, "insert refresh token of family "+t.FamilyID)
	}
	return nil
}

func scanToken(row pgx.Row) (identity.RefreshToken, error) {
	var t identity.RefreshToken
	var used, revoked *time.Time
	if err := row.Scan(&t.Hash, &t.FamilyID, &t.UserID, &t.IssuedAt, &t.ExpiresAt, &used, &revoked); err != nil {
		return identity.RefreshToken{}, err
	}
	t.IssuedAt, t.ExpiresAt = t.IssuedAt.UTC(), t.ExpiresAt.UTC()
	t.UsedAt, t.RevokedAt = fromNullTS(used), fromNullTS(revoked)
	return t, nil
}

// GetRefreshToken implements identity.Store.
func (s *Store) GetRefreshToken(ctx context.Context, hash []byte) (identity.RefreshToken, error) {
	t, err := scanToken(s.pool.QueryRow(ctx, "SELECT "+tokenColumns+" FROM refresh_tokens WHERE hash = $1", hash))
	if errors.Is(err, pgx.ErrNoRows) {
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
	err := database.InPgxTx(ctx, s.pool, func(tx pgx.Tx) error {
		// The conditions in the UPDATE, not a read before it, decide who wins a race between two
		// rotations: the loser waits for the winner's row lock, re-checks the conditions against the
		// committed row and matches nothing.
		var err error
		old, err = scanToken(tx.QueryRow(ctx, `UPDATE refresh_tokens SET used_at = $1
			WHERE hash = $2 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $1
			RETURNING `+tokenColumns, ts(at), oldHash))
		if errors.Is(err, pgx.ErrNoRows) {
			old, err = scanToken(tx.QueryRow(ctx, "SELECT "+tokenColumns+" FROM refresh_tokens WHERE hash = $1", oldHash))
			if errors.Is(err, pgx.ErrNoRows) {
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
	_, err := s.pool.Exec(ctx, "UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL",
		ts(at), familyID)
	if err != nil {
		return fmt.Errorf("revoke refresh token family %s: %w", familyID, err)
	}
	return nil
}

// RevokeUserTokens implements identity.Store. Tokens revoked earlier keep their revocation time.
func (s *Store) RevokeUserTokens(ctx context.Context, userID string, at time.Time) error {
	_, err := s.pool.Exec(ctx, "UPDATE refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
		ts(at), userID)
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
	return database.InPgxTx(ctx, s.pool, func(tx pgx.Tx) error {
		return insertActivity(ctx, tx, activity)
	})
}

// insertActivity appends entries as part of tx.
//
// An identity column hands out values at insert time, so without more care a transaction could commit
// seq 6 while seq 5 is still in flight, and a relay that has read up to 6 would never see 5. Taking a
// self-exclusive table lock before drawing seq serializes activity writers until they commit (readers
// are not blocked), which makes seq order commit order, as identity.Activity promises. Activity comes
// at the rate of logins and profile changes, so the serialization is cheap.
func insertActivity(ctx context.Context, tx pgx.Tx, activity []identity.Activity) error {
	if len(activity) == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE activity IN SHARE ROW EXCLUSIVE MODE"); err != nil {
		return fmt.Errorf("append activity: lock: %w", err)
	}
	for _, a := range activity {
		fields := a.ChangedFields
		if fields == nil {
			fields = []string{}
		}
		changed, err := json.Marshal(fields)
		if err != nil {
			return fmt.Errorf("append activity %s: encode changed fields: %w", a.ID, err)
		}
		_, err = tx.Exec(ctx, `INSERT INTO activity (id, user_id, type, at, actor_user_id, changed_fields)
			VALUES ($1, $2, $3, $4, $5, $6)`,
			a.ID, a.UserID, string(a.Type), ts(a.At), a.ActorUserID, string(changed))
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
	rows, err := s.pool.Query(ctx, `SELECT seq, id, user_id, type, at, actor_user_id, changed_fields
		FROM activity WHERE seq > $1 ORDER BY seq LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read activity after %d: %w", after, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (identity.Activity, error) {
		var a identity.Activity
		var typ, changed string
		if err := row.Scan(&a.Seq, &a.ID, &a.UserID, &typ, &a.At, &a.ActorUserID, &changed); err != nil {
			return identity.Activity{}, err
		}
		a.Type, a.At = identity.ActivityType(typ), a.At.UTC()
		if err := json.Unmarshal([]byte(changed), &a.ChangedFields); err != nil {
			return identity.Activity{}, fmt.Errorf("decode changed fields of %s: %w", a.ID, err)
		}
		if len(a.ChangedFields) == 0 {
			a.ChangedFields = nil
		}
		return a, nil
	})
	if err != nil {
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
	_, err := s.pool.Exec(ctx, `INSERT INTO signing_keys (kid, private_key, public_key, created_at, retire_at)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (kid) DO UPDATE SET retire_at = excluded.retire_at`,
		k.KID, k.PrivateKey, k.PublicKey, ts(k.CreatedAt), nullTS(k.RetireAt))
	if err != nil {
		return mapError(err, "save signing key "+k.KID)
	}
	return nil
}

// SigningKeys implements identity.Store. A key whose RetireAt is at or before `at` has left.
func (s *Store) SigningKeys(ctx context.Context, at time.Time) ([]identity.SigningKey, error) {
	rows, err := s.pool.Query(ctx, `SELECT kid, private_key, public_key, created_at, retire_at FROM signing_keys
		WHERE retire_at IS NULL OR retire_at > $1 ORDER BY created_at DESC, kid DESC`, ts(at))
	if err != nil {
		return nil, fmt.Errorf("list signing keys: %w", err)
	}
	keys, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (identity.SigningKey, error) {
		var k identity.SigningKey
		var retire *time.Time
		if err := row.Scan(&k.KID, &k.PrivateKey, &k.PublicKey, &k.CreatedAt, &retire); err != nil {
			return identity.SigningKey{}, err
		}
		k.CreatedAt, k.RetireAt = k.CreatedAt.UTC(), fromNullTS(retire)
		return k, nil
	})
	if err != nil {
		return nil, fmt.Errorf("list signing keys: %w", err)
	}
	return keys, nil
}
