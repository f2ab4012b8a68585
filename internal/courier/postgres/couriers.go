package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"lastmile/internal/courier"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/database"
)

// querier is what the pool and a transaction have in common, so reads run alike inside and outside a
// transaction.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// activeTasks counts the claims of the courier row c; every read fills Courier.ActiveTasks with it.
const activeTasks = `(SELECT count(*) FROM claims k WHERE k.courier_id = c.id)`

const courierColumns = `c.id, c.user_id, c.display_name, c.mode, c.capacity, c.status, c.created_at, c.updated_at, c.version, ` + activeTasks

func scanCourier(row pgx.Row) (courier.Courier, error) {
	var c courier.Courier
	err := row.Scan(&c.ID, &c.UserID, &c.DisplayName, &c.Mode, &c.Capacity, &c.Status, &c.CreatedAt, &c.UpdatedAt, &c.Version, &c.ActiveTasks)
	if err != nil {
		return courier.Courier{}, err
	}
	// pgx returns timestamptz in the local zone.
	c.CreatedAt, c.UpdatedAt = c.CreatedAt.UTC(), c.UpdatedAt.UTC()
	return c, nil
}

// getCourier reads the courier whose column col (id or user_id) equals v.
func getCourier(ctx context.Context, q querier, col, v string) (courier.Courier, error) {
	c, err := scanCourier(q.QueryRow(ctx, `SELECT `+courierColumns+` FROM couriers c WHERE c.`+col+` = $1`, v))
	if errors.Is(err, pgx.ErrNoRows) {
		if col == "user_id" {
			return courier.Courier{}, apperr.Errorf(apperr.NotFound, "no courier for user %s", v)
		}
		return courier.Courier{}, courierNotFound(v)
	}
	if err != nil {
		return courier.Courier{}, mapError(err, fmt.Sprintf("load courier by %s %s", col, v))
	}
	return c, nil
}

// lockCourier takes the row lock that serialises every check-then-write on courier id (see the package
// comment) and returns the courier as it is once the lock is held, ActiveTasks included. NotFound when
// there is no such courier.
func lockCourier(ctx context.Context, tx pgx.Tx, id string) (courier.Courier, error) {
	var one int
	err := tx.QueryRow(ctx, `SELECT 1 FROM couriers WHERE id = $1 FOR NO KEY UPDATE`, id).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return courier.Courier{}, courierNotFound(id)
	}
	if err != nil {
		return courier.Courier{}, mapError(err, "lock courier "+id)
	}
	// A second statement, so that its snapshot is taken after the lock was granted and the claim count
	// includes the claims committed by whoever held the lock before.
	return getCourier(ctx, tx, "id", id)
}

// CreateCourier implements courier.Store.
func (s *Store) CreateCourier(ctx context.Context, c courier.Courier) error {
	if err := c.CheckStorable(); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, `
		INSERT INTO couriers (id, user_id, display_name, mode, capacity, status, created_at, updated_at, version)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		c.ID, c.UserID, c.DisplayName, string(c.Mode), c.Capacity, string(c.Status), ts(c.CreatedAt), ts(c.UpdatedAt), c.Version)
	if err != nil {
		return mapError(err, "insert courier "+c.ID)
	}
	return nil
}

// GetCourier implements courier.Store.
func (s *Store) GetCourier(ctx context.Context, id string) (courier.Courier, error) {
	return getCourier(ctx, s.pool, "id", id)
}

// GetCourierByUser implements courier.Store.
func (s *Store) GetCourierByUser(ctx context.Context, userID string) (courier.Courier, error) {
	return getCourier(ctx, s.pool, "user_id", userID)
}

// UpdateCourier implements courier.Store.
func (s *Store) UpdateCourier(ctx context.Context, c courier.Courier) (courier.Courier, error) {
	if err := c.CheckStorableProfile(); err != nil {
		return courier.Courier{}, err
	}
	var out courier.Courier
	err := database.InPgxTx(ctx, s.pool, func(tx pgx.Tx) error {
		cur, err := lockCourier(ctx, tx, c.ID)
		if err != nil {
			return err
		}
		if err := cur.CheckProfileUpdate(c); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `
			UPDATE couriers SET display_name = $1, mode = $2, capacity = $3, updated_at = $4, version = $5
			WHERE id = $6`,
			c.DisplayName, string(c.Mode), c.Capacity, ts(c.UpdatedAt), c.Version, c.ID)
		if err != nil {
			return mapError(err, "update courier "+c.ID)
		}
		out, err = getCourier(ctx, tx, "id", c.ID)
		return err
	})
	if err != nil {
		return courier.Courier{}, err
	}
	return out, nil
}

// filterSQL returns the WHERE clause (possibly empty) and its arguments for f, numbering placeholders
// from $1. Status filters on the effective status, so available and busy depend on the claim count.
func filterSQL(f courier.Filter) (string, []any) {
	var conds []string
	var args []any
	if f.Mode != "" {
		args = append(args, string(f.Mode))
		conds = append(conds, "c.mode = $"+strconv.Itoa(len(args)))
	}
	switch f.Status {
	case "":
	case courier.StatusAvailable:
		conds = append(conds, "c.status = 'available' AND "+activeTasks+" < c.capacity")
	case courier.StatusBusy:
		conds = append(conds, "c.status = 'available' AND "+activeTasks+" >= c.capacity")
	default:
		args = append(args, string(f.Status))
		conds = append(conds, "c.status = $"+strconv.Itoa(len(args)))
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// ListCouriers implements courier.Store. A limit above courier.MaxStoreLimit is lowered to it; a limit
// below 1 is Invalid.
func (s *Store) ListCouriers(ctx context.Context, f courier.Filter, after string, limit int) ([]courier.Courier, error) {
	limit, err := courier.StoreLimit(limit)
	if err != nil {
		return nil, err
	}
	where, args := filterSQL(f)
	args = append(args, after)
	cond := "c.id > $" + strconv.Itoa(len(args))
	if where == "" {
		where = " WHERE " + cond
	} else {
		where += " AND " + cond
	}
	args = append(args, limit)
	rows, err := s.pool.Query(ctx, `SELECT `+courierColumns+` FROM couriers c`+where+` ORDER BY c.id LIMIT $`+strconv.Itoa(len(args)), args...)
	if err != nil {
		return nil, mapError(err, "list couriers")
	}
	defer rows.Close()
	var out []courier.Courier
	for rows.Next() {
		c, err := scanCourier(rows)
		if err != nil {
			return nil, fmt.Errorf("list couriers: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, mapError(err, "list couriers")
	}
	return out, nil
}

// CountCouriers implements courier.Store.
func (s *Store) CountCouriers(ctx context.Context, f courier.Filter) (int, error) {
	where, args := filterSQL(f)
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM couriers c`+where, args...).Scan(&n); err != nil {
		return 0, mapError(err, "count couriers")
	}
	return n, nil
}

// SetStatus implements courier.Store.
func (s *Store) SetStatus(ctx context.Context, id string, st courier.Status) (courier.Courier, error) {
	if !st.Settable() {
		return courier.Courier{}, apperr.InvalidFields("invalid status", apperr.FieldViolation{Field: "status", Description: fmt.Sprintf("cannot set status %q", st)})
	}
	var out courier.Courier
	err := database.InPgxTx(ctx, s.pool, func(tx pgx.Tx) error {
		cur, err := lockCourier(ctx, tx, id)
		if err != nil {
			return err
		}
		if cur.Status == st {
			out = cur
			return nil
		}
		if err := cur.CheckStatusChange(st); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE couriers SET status = $1 WHERE id = $2`, string(st), id); err != nil {
			return mapError(err, "set status of courier "+id)
		}
		cur.Status = st
		out = cur
		return nil
	})
	if err != nil {
		return courier.Courier{}, err
	}
	return out, nil
}
