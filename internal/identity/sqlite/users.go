package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"lastmile/internal/identity"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/database"
)

const userColumns = `id, email, username, display_name, role, status, password_hash,
	created_at, updated_at, deleted_at, last_login_at, version`

// execer is what inserting a user needs from a *sql.DB or a *sql.Tx.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// CreateUser implements identity.Store. It writes no activity: the interface has no parameter for it.
func (s *Store) CreateUser(ctx context.Context, u identity.User) error {
	if err := u.CheckStorable(); err != nil {
		return err
	}
	return insertUser(ctx, s.db, u)
}

func insertUser(ctx context.Context, db execer, u identity.User) error {
	_, err := db.ExecContext(ctx, `INSERT INTO users (id, email, email_key, username, username_key,
		display_name, display_name_key, role, status, password_hash,
		created_at, updated_at, deleted_at, last_login_at, version)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		u.ID, u.Email, strings.ToLower(u.Email), u.Username, usernameKey(u.Username),
		u.DisplayName, strings.ToLower(u.DisplayName), string(u.Role), string(u.Status), u.PasswordHash,
		micros(u.CreatedAt), micros(u.UpdatedAt), nullMicros(u.DeletedAt), nullMicros(u.LastLoginAt), u.Version)
	if err != nil {
		return mapError(err, "insert user "+u.ID)
	}
	return nil
}

// usernameKey is NULL for "no username", so that any number of users can have none.
func usernameKey(username string) sql.NullString {
	if username == "" {
		return sql.NullString{}
	}
	return sql.NullString{String: strings.ToLower(username), Valid: true}
}

// CreateUsers implements identity.Store. Conflict and Invalid are reported per user; any other failure
// (the database, the context) fails the whole batch, which then commits nothing.
func (s *Store) CreateUsers(ctx context.Context, users []identity.User) ([]error, error) {
	errs := make([]error, len(users))
	if len(users) == 0 {
		return errs, nil
	}
	err := database.InTx(ctx, s.db, func(tx *sql.Tx) error {
		for i, u := range users {
			if err := u.CheckStorable(); err != nil {
				errs[i] = err
				continue
			}
			if _, err := tx.ExecContext(ctx, "SAVEPOINT create_user"); err != nil {
				return fmt.Errorf("create users: savepoint: %w", err)
			}
			err := insertUser(ctx, tx, u)
			if err != nil {
				if code := apperr.CodeOf(err); code != apperr.Conflict && code != apperr.Invalid {
					return err
				}
				errs[i] = err
				if _, err := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT create_user"); err != nil {
					return fmt.Errorf("create users: roll back to savepoint: %w", err)
				}
			}
			// After ROLLBACK TO the savepoint is still open; RELEASE pops it in both cases.
			if _, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT create_user"); err != nil {
				return fmt.Errorf("create users: release savepoint: %w", err)
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
		where, arg = "id = ?", l.ID
	case l.ID == "" && l.Email != "" && l.Username == "":
		where, arg = "email_key = ?", strings.ToLower(l.Email)
	case l.ID == "" && l.Email == "" && l.Username != "":
		where, arg = "username_key = ?", strings.ToLower(l.Username)
	default:
		return identity.User{}, apperr.Errorf(apperr.Invalid, "exactly one of id, email or username is required")
	}
	u, err := scanUser(s.db.QueryRowContext(ctx, "SELECT "+userColumns+" FROM users WHERE "+where, arg))
	if errors.Is(err, sql.ErrNoRows) {
		return identity.User{}, apperr.Errorf(apperr.NotFound, "user not found")
	}
	if err != nil {
		return identity.User{}, fmt.Errorf("get user: %w", err)
	}
	return u, nil
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface {
	Scan(dest ...any) error
}

func scanUser(row scanner) (identity.User, error) {
	var u identity.User
	var role, status string
	var created, updated int64
	var deleted, lastLogin sql.NullInt64
	err := row.Scan(&u.ID, &u.Email, &u.Username, &u.DisplayName, &role, &status, &u.PasswordHash,
		&created, &updated, &deleted, &lastLogin, &u.Version)
	if err != nil {
		return identity.User{}, err
	}
	u.Role, u.Status = identity.Role(role), identity.Status(status)
	u.CreatedAt, u.UpdatedAt = fromMicros(created), fromMicros(updated)
	u.DeletedAt, u.LastLoginAt = fromNullMicros(deleted), fromNullMicros(lastLogin)
	return u, nil
}

// UpdateUser implements identity.Store. Every field but ID and CreatedAt is replaced.
func (s *Store) UpdateUser(ctx context.Context, u identity.User, activity []identity.Activity) error {
	if err := u.CheckStorable(); err != nil {
		return err
	}
	if err := identity.CheckStorableActivity(activity); err != nil {
		return err
	}
	return database.InTx(ctx, s.db, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE users SET email = ?, email_key = ?, username = ?, username_key = ?,
			display_name = ?, display_name_key = ?, role = ?, status = ?, password_hash = ?,
			updated_at = ?, deleted_at = ?, last_login_at = ?, version = ?
			WHERE id = ? AND version = ?`,
			u.Email, strings.ToLower(u.Email), u.Username, usernameKey(u.Username),
			u.DisplayName, strings.ToLower(u.DisplayName), string(u.Role), string(u.Status), u.PasswordHash,
			micros(u.UpdatedAt), nullMicros(u.DeletedAt), nullMicros(u.LastLoginAt), u.Version,
			u.ID, u.Version-1)
		if err != nil {
			return mapError(err, "update user "+u.ID)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("update user %s: %w", u.ID, err)
		}
		if n == 0 {
			return missingOrMoved(ctx, tx, u)
		}
		return insertActivity(ctx, tx, activity)
	})
}

// missingOrMoved explains why an update matched no row.
func missingOrMoved(ctx context.Context, tx *sql.Tx, u identity.User) error {
	var stored int64
	err := tx.QueryRowContext(ctx, "SELECT version FROM users WHERE id = ?", u.ID).Scan(&stored)
	if errors.Is(err, sql.ErrNoRows) {
		return apperr.Errorf(apperr.NotFound, "user not found")
	}
	if err != nil {
		return fmt.Errorf("update user %s: read version: %w", u.ID, err)
	}
	return apperr.Errorf(apperr.Aborted, "user was changed concurrently (version %d, update expects %d): reload and retry", stored, u.Version-1)
}

// userFilter returns the WHERE clause (without the keyword) and arguments that select f's users.
func userFilter(f identity.Filter) (string, []any) {
	var conds []string
	var args []any
	if f.Status == "" {
		conds = append(conds, "status <> ?")
		args = append(args, string(identity.StatusDeleted))
	} else {
		conds = append(conds, "status = ?")
		args = append(args, string(f.Status))
	}
	if f.Role != "" {
		conds = append(conds, "role = ?")
		args = append(args, string(f.Role))
	}
	if f.Search != "" {
		p := database.ContainsPattern(strings.ToLower(f.Search))
		conds = append(conds, `(email_key LIKE ? ESCAPE '\' OR username_key LIKE ? ESCAPE '\' OR display_name_key LIKE ? ESCAPE '\')`)
		args = append(args, p, p, p)
	}
	return strings.Join(conds, " AND "), args
}

// ListUsers implements identity.Store. Invalid when limit is not positive; limits above
// identity.MaxStoreLimit are lowered to it.
func (s *Store) ListUsers(ctx context.Context, f identity.Filter, after string, limit int) ([]identity.User, error) {
	limit, err := identity.StoreLimit(limit)
	if err != nil {
		return nil, err
	}
	where, args := userFilter(f)
	args = append(args, after, limit)
	rows, err := s.db.QueryContext(ctx,
		"SELECT "+userColumns+" FROM users WHERE "+where+" AND id > ? ORDER BY id LIMIT ?", args...)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	defer rows.Close()
	var users []identity.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("list users: %w", err)
		}
		users = append(users, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return users, nil
}

// CountUsers implements identity.Store.
func (s *Store) CountUsers(ctx context.Context, f identity.Filter) (int, error) {
	where, args := userFilter(f)
	var n int
	if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM users WHERE "+where, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count users: %w", err)
	}
	return n, nil
}
