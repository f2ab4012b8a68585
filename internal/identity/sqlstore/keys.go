package sqlstore

import (
	"context"
	"time"

	"lastmile/internal/identity"
	"lastmile/internal/platform/database"
)

// SaveSigningKey implements identity.Store. Saving a known KID changes its RetireAt only: key material
// is immutable. Invalid for a key without KID or with a malformed key.
func (s *Store) SaveSigningKey(ctx context.Context, k identity.SigningKey) error {
	if err := k.CheckStorable(); err != nil {
		return err
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO signing_keys (kid, private_key, public_key, created_at, retire_at)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (kid) DO UPDATE SET retire_at = excluded.retire_at`,
		k.KID, k.PrivateKey, k.PublicKey, s.ts(k.CreatedAt), s.nullTS(k.RetireAt))
	if err != nil {
		return s.e.MapError(err, "save signing key "+k.KID)
	}
	return nil
}

// SigningKeys implements identity.Store. A key whose RetireAt is at or before `at` has left.
func (s *Store) SigningKeys(ctx context.Context, at time.Time) ([]identity.SigningKey, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT kid, private_key, public_key, created_at, retire_at FROM signing_keys
		WHERE retire_at IS NULL OR retire_at > $1 ORDER BY created_at DESC, kid DESC`, s.ts(at))
	if err != nil {
		return nil, s.e.MapError(err, "list signing keys")
	}
	keys, err := collect(rows, func(row scanner) (identity.SigningKey, error) {
		var k identity.SigningKey
		err := row.Scan(&k.KID, &k.PrivateKey, &k.PublicKey, database.ScanTime(&k.CreatedAt), database.ScanTime(&k.RetireAt))
		return k, err
	})
	if err != nil {
		return nil, s.e.MapError(err, "list signing keys")
	}
	return keys, nil
}
