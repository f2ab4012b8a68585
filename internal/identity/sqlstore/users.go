package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"lastmile/internal/identity"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/database"
)

// The *_key columns hold the lowercased values that uniqueness and search compare, computed here in Go so
// that both engines fold case alike whatever their locale (SQLite's lower() folds ASCII only).
const userColumns = `id, email, username, display_name, role, status, password_hash,
	created_at, updated_at, deleted_at, last_login_at, version, revoked_before`

// CreateUser implements identity.Store. It writes no activity: the interface has no parameter for it.
// Invalid for a user no store can hold (identity.User.CheckStorable).
func (s *Store) CreateUser(ctx context.Context, u identity.User) error {
	if err := u.CheckStorable(); err != nil {
		return err
	}
	return s.insertUser(ctx, s.db, u)
}

func (s *Store) insertUser(ctx context.Context, q querier, u identity.User) error {
	_, err := q.ExecContext(ctx, `INSERT INTO users (id, email, email_key, username, username_key,
		display_name, display_name_key, role, status, password_hash,
		created_at, updated_at, deleted_at, last_login_at, version, revoked_before)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
		u.ID, u.Email, identity.FoldKey(u.Email), u.Username, usernameKey(u.Username),
		u.DisplayName, identity.FoldKey(u.DisplayName), string(u.Role), string(u.Status), u.PasswordHash,
		s.ts(u.CreatedAt), s.ts(u.UpdatedAt), s.nullTS(u.DeletedAt), s.nullTS(u.LastLoginAt), u.Version,
		s.nullTS(u.RevokedBefore))
	if err != nil {
		return s.e.MapError(err, "insert user "+u.ID)
	}
	return nil
}

// usernameKey is NULL for "no username", so that any number of users can have none.
func usernameKey(username string) sql.NullString {
	if username == "" {
		return sql.NullString{}
	}
	return sql.NullString{String: identity.FoldKey(username), Valid: true}
}

// CreateUsers implements identity.Store. Conflict and Invalid are reported per user; any other failure
// (the database, the context) fails the whole batch, which then commits nothing.
func (s *Store) CreateUsers(ctx context.Context, users []identity.User) ([]error, error) {
	errs := make([]error, len(users))
	if len(users) == 0 {
		return errs, nil
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		clear(errs) // from an attempt that was rolled back
		for i, u := range users {
			if err := u.CheckStorable(); err != nil {
				errs[i] = err
				continue
			}
			// A failed statement aborts a PostgreSQL transaction; rolling back to the savepoint is what
			// lets the rest of the batch go on.
			if _, err := tx.ExecContext(ctx, "SAVEPOINT create_user"); err != nil {
				return s.e.MapError(err, "create users: savepoint")
			}
			if err := s.insertUser(ctx, tx, u); err != nil {
				if code := apperr.CodeOf(err); code != apperr.Conflict && code != apperr.Invalid {
					return err
				}
				errs[i] = err
				if _, err := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT create_user"); err != nil {
					return s.e.MapError(err, "create users: roll back to savepoint")
				}
			}
			// After ROLLBACK TO the savepoint is still open; RELEASE pops it in both cases.
			if _, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT create_user"); err != nil {
				return s.e.MapError(err, "create users: release savepoint")
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return errs, nil
}

// GetUser implements identity.Store. Invalid unless exactly one field of l is set.
func (s *Store) GetUser(ctx context.Context, l identity.Lookup) (identity.User, error) {
	var where string
	var arg any
	switch {
	case l.ID != "" && l.Email == "" && l.Username == "":
		where, arg = "id = $1", l.ID
	case l.ID == "" && l.Email != "" && l.Username == "":
		where, arg = "email_key = $1", identity.FoldKey(l.Email)
	case l.ID == "" && l.Email == "" && l.Username != "":
		where, arg = "username_key = $1", identity.FoldKey(l.Username)
	default:
		return identity.User{}, apperr.Errorf(apperr.Invalid, "exactly one of id, email or username is required")
	}
	u, err := scanUser(s.db.QueryRowContext(ctx, "SELECT "+userColumns+" FROM users WHERE "+where, arg))
	if errors.Is(err, sql.ErrNoRows) {
		return identity.User{}, apperr.Errorf(apperr.NotFound, "user not found")
	}
	if err != nil {
		return identity.User{}, s.e.MapError(err, "get user")
	}
	return u, nil
}

func scanUser(row scanner) (identity.User, error) {
	var u identity.User
	var role, status string
	err := row.Scan(&u.ID, &u.Email, &u.Username, &u.DisplayName, &role, &status, &u.PasswordHash,
		database.ScanTime(&u.CreatedAt), database.ScanTime(&u.UpdatedAt),
		database.ScanTime(&u.DeletedAt), database.ScanTime(&u.LastLoginAt), &u.Version, database.ScanTime(&u.RevokedBefore))
	if err != nil {
		return identity.User{}, err
	}
	u.Role, u.Status = identity.Role(role), identity.Status(status)
	return u, nil
}

// UpdateUser implements identity.Store. Every field but ID and CreatedAt is replaced.
func (s *Store) UpdateUser(ctx context.Context, id string, change func(identity.UserTx, identity.User) (identity.User, []identity.Activity, error)) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		cur, err := scanUser(tx.QueryRowContext(ctx, "SELECT "+userColumns+" FROM users WHERE id = $1"+s.e.LockClause, id))
		if errors.Is(err, sql.ErrNoRows) {
			return apperr.Errorf(apperr.NotFound, "user not found")
		}
		if err != nil {
			return s.e.MapError(err, fmt.Sprintf("update user %s: read it", id))
		}
		next, activity, err := change(userTx{s: s, tx: tx}, cur)
		if err != nil {
			return err
		}
		if next.Version == cur.Version {
			return nil
		}
		if err := next.CheckStorable(); err != nil {
			return err
		}
		if err := identity.CheckStorableActivity(activity); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE users SET email = $1, email_key = $2, username = $3, username_key = $4,
			display_name = $5, display_name_key = $6, role = $7, status = $8, password_hash = $9,
			updated_at = $10, deleted_at = $11, last_login_at = $12, version = $13, revoked_before = $14
			WHERE id = $15`,
			next.Email, identity.FoldKey(next.Email), next.Username, usernameKey(next.Username),
			next.DisplayName, identity.FoldKey(next.DisplayName), string(next.Role), string(next.Status), next.PasswordHash,
			s.ts(next.UpdatedAt), s.nullTS(next.DeletedAt), s.nullTS(next.LastLoginAt), next.Version,
			s.nullTS(next.RevokedBefore), cur.ID)
		if err != nil {
			return s.e.MapError(err, "update user "+cur.ID)
		}
		return s.insertActivity(ctx, tx, activity)
	})
}

// userTx is the identity.UserTx of an UpdateUser transaction.
type userTx struct {
	s  *Store
	tx *sql.Tx
}

// CountActiveAdmins implements identity.UserTx. The rows are locked in id order.
func (u userTx) CountActiveAdmins(ctx context.Context) (int, error) {
	rows, err := u.tx.QueryContext(ctx, "SELECT id FROM users WHERE role = $1 AND status = $2 ORDER BY id"+u.s.e.LockClause,
		string(identity.RoleAdmin), string(identity.StatusActive))
	if err != nil {
		return 0, u.s.e.MapError(err, "count active admins")
	}
	ids, err := collect(rows, func(row scanner) (id string, err error) { return id, row.Scan(&id) })
	if err != nil {
		return 0, u.s.e.MapError(err, "count active admins")
	}
	return len(ids), nil
}

// userFilter returns the WHERE clause (without the keyword) and arguments that select f's users;
// placeholders are numbered from $1.
func userFilter(f identity.Filter) (string, []any) {
	var conds []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if f.Status == "" {
		conds = append(conds, "status <> "+arg(string(identity.StatusDeleted)))
	} else {
		conds = append(conds, "status = "+arg(string(f.Status)))
	}
	if f.Role != "" {
		conds = append(conds, "role = "+arg(string(f.Role)))
	}
	if f.Search != "" {
		p := arg(database.ContainsPattern(identity.FoldKey(f.Search)))
		conds = append(conds, "(email_key LIKE "+p+` ESCAPE '\' OR username_key LIKE `+p+` ESCAPE '\' OR display_name_key LIKE `+p+` ESCAPE '\')`)
	}
	return strings.Join(conds, " AND "), args
}

// ListUsers implements identity.Store. Invalid when limit is not positive; limits above
// identity.MaxStoreLimit are lowered to it.
func (s *Store) ListUsers(ctx context.Context, f identity.Filter, after string, limit int) ([]identity.User, error) {
	limit, err := database.RowLimit(limit, identity.MaxStoreLimit)
	if err != nil {
		return nil, err
	}
	where, args := userFilter(f)
	args = append(args, after, limit)
	rows, err := s.db.QueryContext(ctx, "SELECT "+userColumns+" FROM users WHERE "+where+
		" AND id > $"+strconv.Itoa(len(args)-1)+" ORDER BY id LIMIT $"+strconv.Itoa(len(args)), args...)
	if err != nil {
		return nil, s.e.MapError(err, "list users")
	}
	users, err := collect(rows, scanUser)
	if err != nil {
		return nil, s.e.MapError(err, "list users")
	}
	return users, nil
}

// CountUsers implements identity.Store.
func (s *Store) CountUsers(ctx context.Context, f identity.Filter) (int, error) {
	where, args := userFilter(f)
	var n int
	if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM users WHERE "+where, args...).Scan(&n); err != nil {
		return 0, s.e.MapError(err, "count users")
	}
	return n, nil
}
