package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"lastmile/internal/identity"
	"lastmile/internal/platform/database"
	"lastmile/internal/platform/eventlog/sqllog"
)

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
	return s.inTx(ctx, func(tx *sql.Tx) error {
		return s.insertActivity(ctx, tx, activity)
	})
}

// insertActivity appends entries as part of tx: to identity's event log (sqllog.Append), which every
// replica's activity feed tails, and to the activity history (the activity table). It must be the last
// step of the transaction, as the event log's append lock is held until the commit.
//
// The event log is written first: its append lock serializes the service's appending transactions until
// they commit, so the history rows inserted after it draw their sequence numbers in commit order too, as
// identity.Activity.Seq promises, with no lock of their own (SQLite's single writer does the same by
// itself).
func (s *Store) insertActivity(ctx context.Context, tx *sql.Tx, activity []identity.Activity) error {
	if len(activity) == 0 {
		return nil
	}
	for _, a := range activity {
		e, err := identity.EncodeActivity(a)
		if err != nil {
			return err
		}
		if _, err := sqllog.Append(ctx, tx, s.e.Dialect, e); err != nil {
			return s.e.MapError(err, fmt.Sprintf("append activity %s to the event log", a.ID))
		}
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
		_, err = tx.ExecContext(ctx, `INSERT INTO activity (id, user_id, type, at, actor_user_id, changed_fields)
			VALUES ($1, $2, $3, $4, $5, $6)`,
			a.ID, a.UserID, string(a.Type), s.ts(a.At), a.ActorUserID, string(changed))
		if err != nil {
			return s.e.MapError(err, "append activity "+a.ID)
		}
	}
	return nil
}

// ActivitySince implements identity.Store. Entries without changed fields have nil ChangedFields.
// Invalid when limit is not positive; limits above identity.MaxStoreLimit are lowered to it.
func (s *Store) ActivitySince(ctx context.Context, after int64, limit int) ([]identity.Activity, error) {
	limit, err := database.RowLimit(limit, identity.MaxStoreLimit)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT seq, id, user_id, type, at, actor_user_id, changed_fields
		FROM activity WHERE seq > $1 ORDER BY seq LIMIT $2`, after, limit)
	if err != nil {
		return nil, s.e.MapError(err, fmt.Sprintf("read activity after %d", after))
	}
	out, err := collect(rows, scanActivity)
	if err != nil {
		return nil, s.e.MapError(err, fmt.Sprintf("read activity after %d", after))
	}
	return out, nil
}

func scanActivity(row scanner) (identity.Activity, error) {
	var a identity.Activity
	var typ, changed string
	if err := row.Scan(&a.Seq, &a.ID, &a.UserID, &typ, database.ScanTime(&a.At), &a.ActorUserID, &changed); err != nil {
		return identity.Activity{}, err
	}
	a.Type = identity.ActivityType(typ)
	if err := json.Unmarshal([]byte(changed), &a.ChangedFields); err != nil {
		return identity.Activity{}, fmt.Errorf("decode changed fields of %s: %w", a.ID, err)
	}
	if len(a.ChangedFields) == 0 {
		a.ChangedFields = nil
	}
	return a, nil
}
