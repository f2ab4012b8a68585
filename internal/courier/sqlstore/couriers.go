package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"lastmile/internal/courier"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/database"
)

// activeTasks counts the claims of the courier row c; every read fills Courier.ActiveTasks with it.
const activeTasks = `(SELECT count(*) FROM claims k WHERE k.courier_id = c.id)`

const courierColumns = `c.id, c.user_id, c.display_name, c.mode, c.capacity, c.status, c.created_at, c.updated_at, c.version, ` + activeTasks

type scanner interface{ Scan(dest ...any) error }

func scanCourier(row scanner) (courier.Courier, error) {
	var c courier.Courier
	err := row.Scan(&c.ID, &c.UserID, &c.DisplayName, &c.Mode, &c.Capacity, &c.Status,
		database.ScanTime(&c.CreatedAt), database.ScanTime(&c.UpdatedAt), &c.Version, &c.ActiveTasks)
	return c, err
}

// getCourier reads the courier whose column col (id or user_id) equals v.
func (s *Store) getCourier(ctx context.Context, q querier, col, v string) (courier.Courier, error) {
	c, err := scanCourier(q.QueryRowContext(ctx, `SELECT `+courierColumns+` FROM couriers c WHERE c.`+col+` = $1`, v))
	if errors.Is(err, sql.ErrNoRows) {
		if col == "user_id" {
			return courier.Courier{}, apperr.Errorf(apperr.NotFound, "no courier for user %s", v)
		}
		return courier.Courier{}, courierNotFound(v)
	}
	if err != nil {
		return courier.Courier{}, s.e.MapError(err, fmt.Sprintf("load courier by %s %s", col, v))
	}
	return c, nil
}

// CreateCourier implements courier.Store.
func (s *Store) CreateCourier(ctx context.Context, c courier.Courier) error {
	if err := checkCourier(c); err != nil {
		return err
	}
	_, err := s.db.ExecContext(ctx, `
		INSERT INTO couriers (id, user_id, display_name, mode, capacity, status, created_at, updated_at, version)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		c.ID, c.UserID, c.DisplayName, string(c.Mode), c.Capacity, string(c.Status), s.time(c.CreatedAt), s.time(c.UpdatedAt), c.Version)
	if err != nil {
		return s.e.MapError(err, "insert courier "+c.ID)
	}
	return nil
}

// GetCourier implements courier.Store.
func (s *Store) GetCourier(ctx context.Context, id string) (courier.Courier, error) {
	return s.getCourier(ctx, s.db, "id", id)
}

// GetCourierByUser implements courier.Store.
func (s *Store) GetCourierByUser(ctx context.Context, userID string) (courier.Courier, error) {
	return s.getCourier(ctx, s.db, "user_id", userID)
}

// UpdateCourier implements courier.Store.
func (s *Store) UpdateCourier(ctx context.Context, id string, update func(courier.Courier) (courier.Courier, error)) (courier.Courier, error) {
	var out courier.Courier
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		cur, err := s.lockCourier(ctx, tx, id)
		if err != nil {
			return err
		}
		next, err := update(cur)
		if err != nil {
			return err
		}
		if next == cur {
			out = cur
			return nil
		}
		// Identity, creation time and claims are not update's to change.
		next.ID, next.UserID, next.CreatedAt, next.ActiveTasks = cur.ID, cur.UserID, cur.CreatedAt, cur.ActiveTasks
		next.UpdatedAt = next.UpdatedAt.UTC().Truncate(timePrecision)
		if err := checkCourier(next); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `
			UPDATE couriers SET display_name = $1, mode = $2, capacity = $3, status = $4, updated_at = $5, version = $6
			WHERE id = $7`,
			next.DisplayName, string(next.Mode), next.Capacity, string(next.Status), s.time(next.UpdatedAt), next.Version, id)
		if err != nil {
			return s.e.MapError(err, "update courier "+id)
		}
		out = next
		return nil
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
	limit, err := database.RowLimit(limit, courier.MaxStoreLimit)
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
	rows, err := s.db.QueryContext(ctx, `SELECT `+courierColumns+` FROM couriers c`+where+` ORDER BY c.id LIMIT $`+strconv.Itoa(len(args)), args...)
	if err != nil {
		return nil, s.e.MapError(err, "list couriers")
	}
	defer rows.Close()
	var out []courier.Courier
	for rows.Next() {
		c, err := scanCourier(rows)
		if err != nil {
			return nil, s.e.MapError(err, "list couriers")
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, s.e.MapError(err, "list couriers")
	}
	return out, nil
}

// CountCouriers implements courier.Store.
func (s *Store) CountCouriers(ctx context.Context, f courier.Filter) (int, error) {
	where, args := filterSQL(f)
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM couriers c`+where, args...).Scan(&n); err != nil {
		return 0, s.e.MapError(err, "count couriers")
	}
	return n, nil
}
