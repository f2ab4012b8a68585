package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"lastmile/internal/courier"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/database"
)

// activeTasks counts the claims of the courier row c; every read fills Courier.ActiveTasks with it.
const activeTasks = `(SELECT count(*) FROM claims k WHERE k.courier_id = c.id)`

const courierColumns = `c.id, c.user_id, c.display_name, c.mode, c.capacity, c.status, c.created_at, c.updated_at, c.version, ` + activeTasks

type scanner interface{ Scan(dest ...any) error }

func scanCourier(s scanner) (courier.Courier, error) {
	var c courier.Courier
	var created, updated int64
	err := s.Scan(&c.ID, &c.UserID, &c.DisplayName, &c.Mode, &c.Capacity, &c.Status, &created, &updated, &c.Version, &c.ActiveTasks)
	if err != nil {
		return courier.Courier{}, err
	}
	c.CreatedAt = fromMicros(created)
	c.UpdatedAt = fromMicros(updated)
	return c, nil
}

// getCourier reads the courier whose column col (id or user_id) equals v.
func getCourier(ctx context.Context, q querier, col, v string) (courier.Courier, error) {
	c, err := scanCourier(q.QueryRowContext(ctx, `SELECT `+courierColumns+` FROM couriers c WHERE c.`+col+` = ?`, v))
	if errors.Is(err, sql.ErrNoRows) {
		if col == "user_id" {
			return courier.Courier{}, apperr.Errorf(apperr.NotFound, "no courier for user %s", v)
		}
		return courier.Courier{}, courierNotFound(v)
	}
	if err != nil {
		return courier.Courier{}, fmt.Errorf("load courier by %s %s: %w", col, v, err)
	}
	return c, nil
}

// CreateCourier implements courier.Store.
func (s *Store) CreateCourier(ctx context.Context, c courier.Courier) error {
	if err := c.CheckStorable(); err != nil {
		return err
	}
	_, err := s.db.ExecContext(ctx, `
		INSERT INTO couriers (id, user_id, display_name, mode, capacity, status, created_at, updated_at, version)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.ID, c.UserID, c.DisplayName, c.Mode, c.Capacity, c.Status, micros(c.CreatedAt), micros(c.UpdatedAt), c.Version)
	if err != nil {
		return mapError(err, "insert courier "+c.ID)
	}
	return nil
}

// GetCourier implements courier.Store.
func (s *Store) GetCourier(ctx context.Context, id string) (courier.Courier, error) {
	return getCourier(ctx, s.db, "id", id)
}

// GetCourierByUser implements courier.Store.
func (s *Store) GetCourierByUser(ctx context.Context, userID string) (courier.Courier, error) {
	return getCourier(ctx, s.db, "user_id", userID)
}

// UpdateCourier implements courier.Store.
func (s *Store) UpdateCourier(ctx context.Context, c courier.Courier) (courier.Courier, error) {
	if err := c.CheckStorableProfile(); err != nil {
		return courier.Courier{}, err
	}
	var out courier.Courier
	err := database.InTx(ctx, s.db, func(tx *sql.Tx) error {
		cur, err := getCourier(ctx, tx, "id", c.ID)
		if err != nil {
			return err
		}
		if err := cur.CheckProfileUpdate(c); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `
			UPDATE couriers SET display_name = ?, mode = ?, capacity = ?, updated_at = ?, version = ?
			WHERE id = ?`,
			c.DisplayName, c.Mode, c.Capacity, micros(c.UpdatedAt), c.Version, c.ID)
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

// filterSQL returns the WHERE clause (possibly empty) and its arguments for f. Status filters on the
// effective status, so available and busy depend on the claim count.
func filterSQL(f courier.Filter) (string, []any) {
	var conds []string
	var args []any
	if f.Mode != "" {
		conds = append(conds, "c.mode = ?")
		args = append(args, f.Mode)
	}
	switch f.Status {
	case "":
	case courier.StatusAvailable:
		conds = append(conds, "c.status = 'available' AND "+activeTasks+" < c.capacity")
	case courier.StatusBusy:
		conds = append(conds, "c.status = 'available' AND "+activeTasks+" >= c.capacity")
	default:
		conds = append(conds, "c.status = ?")
		args = append(args, f.Status)
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
	if where == "" {
		where = " WHERE c.id > ?"
	} else {
		where += " AND c.id > ?"
	}
	args = append(args, after, limit)
	rows, err := s.db.QueryContext(ctx, `SELECT `+courierColumns+` FROM couriers c`+where+` ORDER BY c.id LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("list couriers: %w", err)
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
		return nil, fmt.Errorf("list couriers: %w", err)
	}
	return out, nil
}

// CountCouriers implements courier.Store.
func (s *Store) CountCouriers(ctx context.Context, f courier.Filter) (int, error) {
	where, args := filterSQL(f)
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM couriers c`+where, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count couriers: %w", err)
	}
	return n, nil
}

// SetStatus implements courier.Store.
func (s *Store) SetStatus(ctx context.Context, id string, st courier.Status) (courier.Courier, error) {
	if !st.Settable() {
		return courier.Courier{}, apperr.InvalidFields("invalid status", apperr.FieldViolation{Field: "status", Description: fmt.Sprintf("cannot set status %q", st)})
	}
	var out courier.Courier
	err := database.InTx(ctx, s.db, func(tx *sql.Tx) error {
		cur, err := getCourier(ctx, tx, "id", id)
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
		if _, err := tx.ExecContext(ctx, `UPDATE couriers SET status = ? WHERE id = ?`, st, id); err != nil {
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
