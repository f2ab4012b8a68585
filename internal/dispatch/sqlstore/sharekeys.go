package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"lastmile/internal/dispatch"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/database"
)

// ShareKeys is a dispatch.ShareKeys on the share_keys table. Keys are inserted, never updated; the
// newest (highest id) is the current one.
type ShareKeys struct {
	db      *sql.DB
	dialect database.Dialect
}

var _ dispatch.ShareKeys = (*ShareKeys)(nil)

// NewShareKeys returns the share key store on db, whose engine is d.
func NewShareKeys(db *sql.DB, d database.Dialect) *ShareKeys {
	return &ShareKeys{db: db, dialect: d}
}

// ShareKeys returns the share key store on the Store's database.
func (s *Store) ShareKeys() *ShareKeys { return NewShareKeys(s.db, s.e.Dialect) }

// CurrentShareKey implements dispatch.ShareKeys. The first key is inserted with ON CONFLICT DO NOTHING,
// so replicas racing to create it all read back the one that won.
func (s *ShareKeys) CurrentShareKey(ctx context.Context, first dispatch.ShareKey) (dispatch.ShareKey, error) {
	k, err := s.newest(ctx)
	if err == nil {
		return k, nil
	}
	if apperr.CodeOf(err) != apperr.NotFound {
		return dispatch.ShareKey{}, err
	}
	if first.ID == 0 || len(first.Secret) < dispatch.ShareKeySize || first.CreateTime.IsZero() {
		return dispatch.ShareKey{}, apperr.Errorf(apperr.Invalid, "a share key needs an id, a secret of at least %d bytes and a create time", dispatch.ShareKeySize)
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO share_keys (id, secret, create_time) VALUES ($1, $2, $3)
		ON CONFLICT (id) DO NOTHING`, int64(first.ID), first.Secret, s.dialect.Time(first.CreateTime))
	if err != nil {
		return dispatch.ShareKey{}, database.Classify(fmt.Errorf("insert share key %d: %w", first.ID, err))
	}
	return s.newest(ctx)
}

// ShareKey implements dispatch.ShareKeys.
func (s *ShareKeys) ShareKey(ctx context.Context, id uint32) (dispatch.ShareKey, error) {
	return s.scan(s.db.QueryRowContext(ctx, `SELECT id, secret, create_time FROM share_keys WHERE id = $1`, int64(id)), "share key")
}

func (s *ShareKeys) newest(ctx context.Context) (dispatch.ShareKey, error) {
	return s.scan(s.db.QueryRowContext(ctx, `SELECT id, secret, create_time FROM share_keys ORDER BY id DESC LIMIT 1`), "current share key")
}

func (s *ShareKeys) scan(row *sql.Row, what string) (dispatch.ShareKey, error) {
	var k dispatch.ShareKey
	var id int64
	err := row.Scan(&id, &k.Secret, database.ScanTime(&k.CreateTime))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return dispatch.ShareKey{}, apperr.Errorf(apperr.NotFound, "%s not found", what)
	case err != nil:
		return dispatch.ShareKey{}, database.Classify(fmt.Errorf("read %s: %w", what, err))
	}
	k.ID = uint32(id)
	return k, nil
}
