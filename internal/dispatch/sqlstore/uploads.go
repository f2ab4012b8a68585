package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"lastmile/internal/dispatch"
	"lastmile/internal/geo"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/database"
)

// Uploads is a dispatch.UploadStore on a *sql.DB carrying the uploads table (migration 00002 of the
// sqlite and postgres packages). Like the rest of the package it runs one SQL text on both engines.
//
// Locking: UpdateUpload reads the row with SELECT ... FOR UPDATE in PostgreSQL; CreateUpload takes a
// transaction-scoped advisory lock on the task id before it counts the task's uploads, so two concurrent
// starts on one task cannot both pass the limit. In SQLite every transaction holds the write lock from its
// start (database.OpenSQLite), which serialises them all.
type Uploads struct {
	db      *sql.DB
	dialect database.Dialect
}

var _ dispatch.UploadStore = (*Uploads)(nil)

// NewUploads returns the upload store on db, whose engine is d.
func NewUploads(db *sql.DB, d database.Dialect) *Uploads {
	return &Uploads{db: db, dialect: d}
}

// Uploads returns the upload store on the Store's database.
func (s *Store) Uploads() *Uploads { return NewUploads(s.db, s.e.Dialect) }

// uploadConstraints says what the uploads table's constraint violations mean to callers.
var uploadConstraints = database.Constraints{
	Unique: map[string]string{
		"uploads.id":   "upload already exists",
		"uploads_pkey": "upload already exists",
	},
	ForeignKey: "task not found",
}

func (s *Uploads) mapError(err error, what string) error {
	if s.dialect == database.SQLite {
		return uploadConstraints.MapSQLite(err, what)
	}
	return uploadConstraints.MapPostgres(err, what)
}

const uploadColumns = `id, task_id, courier_id, kind, content_type, size_bytes, committed_offset, sha256, state,
	signer_name, capture_time, capture_lat, capture_lng, create_time, update_time, expire_time, writer,
	writer_until, attach_time`

// scanUpload reads a row of uploadColumns.
func scanUpload(row interface{ Scan(...any) error }) (dispatch.Upload, error) {
	var u dispatch.Upload
	var lat, lng sql.NullFloat64
	err := row.Scan(&u.ID, &u.TaskID, &u.CourierID, &u.Kind, &u.ContentType, &u.SizeBytes, &u.CommittedOffset,
		&u.SHA256, &u.State, &u.SignerName, database.ScanTime(&u.CaptureTime), &lat, &lng,
		database.ScanTime(&u.CreateTime), database.ScanTime(&u.UpdateTime), database.ScanTime(&u.ExpireTime),
		&u.Writer, database.ScanTime(&u.WriterUntil), database.ScanTime(&u.AttachTime))
	if err != nil {
		return dispatch.Upload{}, err
	}
	if lat.Valid && lng.Valid {
		u.CaptureLocation = &geo.LatLng{Lat: lat.Float64, Lng: lng.Float64}
	}
	return u, nil
}

// checkUpload refuses values the table cannot hold as Invalid, before they reach SQL.
func checkUpload(u dispatch.Upload) error {
	switch {
	case u.ID == "" || u.TaskID == "" || u.CourierID == "":
		return apperr.Errorf(apperr.Invalid, "upload needs an id, a task and a courier")
	case u.Kind != dispatch.ProofPhoto && u.Kind != dispatch.ProofSignature:
		return apperr.Errorf(apperr.Invalid, "upload kind %q cannot be stored", u.Kind)
	case !u.State.Valid():
		return apperr.Errorf(apperr.Invalid, "upload state %q cannot be stored", u.State)
	case u.SizeBytes <= 0 || u.CommittedOffset < 0 || u.CommittedOffset > u.SizeBytes:
		return apperr.Errorf(apperr.Invalid, "upload offset %d of size %d cannot be stored", u.CommittedOffset, u.SizeBytes)
	case (u.State == dispatch.UploadInProgress) != !u.ExpireTime.IsZero():
		return apperr.Errorf(apperr.Invalid, "an upload has an expire time exactly while in progress")
	case u.CreateTime.IsZero() || u.UpdateTime.IsZero():
		return apperr.Errorf(apperr.Invalid, "upload needs create and update times")
	}
	return nil
}

func (s *Uploads) location(u dispatch.Upload) (lat, lng any) {
	if u.CaptureLocation == nil {
		return nil, nil
	}
	return u.CaptureLocation.Lat, u.CaptureLocation.Lng
}

// CreateUpload implements dispatch.UploadStore.
func (s *Uploads) CreateUpload(ctx context.Context, u dispatch.Upload, admit func(dispatch.UploadCounts) error) error {
	if err := checkUpload(u); err != nil {
		return err
	}
	return database.InTx(ctx, s.db, func(tx *sql.Tx) error {
		if s.dialect == database.Postgres {
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, "dispatch.uploads:"+u.TaskID); err != nil {
				return s.mapError(err, "lock uploads of task "+u.TaskID)
			}
		}
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM uploads WHERE id = $1`, u.ID).Scan(&one)
		if err == nil {
			return apperr.Errorf(apperr.Conflict, "upload %s already exists", u.ID)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return s.mapError(err, "look up upload "+u.ID)
		}
		counts, err := s.countUploads(ctx, tx, u.TaskID)
		if err != nil {
			return err
		}
		if err := admit(counts); err != nil {
			return err
		}
		lat, lng := s.location(u)
		d := s.dialect
		_, err = tx.ExecContext(ctx, `INSERT INTO uploads (`+uploadColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)`,
			u.ID, u.TaskID, u.CourierID, string(u.Kind), u.ContentType, u.SizeBytes, u.CommittedOffset, u.SHA256, string(u.State),
			u.SignerName, d.NullTime(u.CaptureTime), lat, lng, d.Time(u.CreateTime), d.Time(u.UpdateTime),
			d.NullTime(u.ExpireTime), u.Writer, d.NullTime(u.WriterUntil), d.NullTime(u.AttachTime))
		if err != nil {
			return s.mapError(err, "insert upload "+u.ID)
		}
		return nil
	})
}

// countUploads counts taskID's uploads by courier and state, in tx.
func (s *Uploads) countUploads(ctx context.Context, tx *sql.Tx, taskID string) (dispatch.UploadCounts, error) {
	rows, err := tx.QueryContext(ctx, `SELECT courier_id, state, count(*) FROM uploads WHERE task_id = $1 GROUP BY courier_id, state`, taskID)
	if err != nil {
		return nil, s.mapError(err, "count uploads of task "+taskID)
	}
	defer rows.Close()
	counts := dispatch.UploadCounts{}
	for rows.Next() {
		var courierID, state string
		var n int
		if err := rows.Scan(&courierID, &state, &n); err != nil {
			return nil, s.mapError(err, "count uploads of task "+taskID)
		}
		if counts[courierID] == nil {
			counts[courierID] = map[dispatch.UploadState]int{}
		}
		counts[courierID][dispatch.UploadState(state)] = n
	}
	if err := rows.Err(); err != nil {
		return nil, s.mapError(err, "count uploads of task "+taskID)
	}
	return counts, nil
}

// GetUpload implements dispatch.UploadStore.
func (s *Uploads) GetUpload(ctx context.Context, id string) (dispatch.Upload, error) {
	u, err := scanUpload(s.db.QueryRowContext(ctx, `SELECT `+uploadColumns+` FROM uploads WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return dispatch.Upload{}, apperr.Errorf(apperr.NotFound, "upload %s not found", id)
	}
	if err != nil {
		return dispatch.Upload{}, s.mapError(err, "get upload "+id)
	}
	return u, nil
}

// UpdateUpload implements dispatch.UploadStore.
func (s *Uploads) UpdateUpload(ctx context.Context, id string, fn func(dispatch.Upload) (dispatch.Upload, error)) (dispatch.Upload, error) {
	lock := ""
	if s.dialect == database.Postgres {
		lock = " FOR UPDATE"
	}
	var out dispatch.Upload
	err := database.InTx(ctx, s.db, func(tx *sql.Tx) error {
		cur, err := scanUpload(tx.QueryRowContext(ctx, `SELECT `+uploadColumns+` FROM uploads WHERE id = $1`+lock, id))
		if errors.Is(err, sql.ErrNoRows) {
			return apperr.Errorf(apperr.NotFound, "upload %s not found", id)
		}
		if err != nil {
			return s.mapError(err, "lock upload "+id)
		}
		u, err := fn(cur)
		if err != nil {
			return err
		}
		if u.ID != cur.ID || u.TaskID != cur.TaskID || u.CourierID != cur.CourierID {
			return fmt.Errorf("update upload %s: the id, task and courier of an upload never change", id)
		}
		if err := checkUpload(u); err != nil {
			return err
		}
		lat, lng := s.location(u)
		d := s.dialect
		_, err = tx.ExecContext(ctx, `UPDATE uploads SET kind = $2, content_type = $3, size_bytes = $4,
			committed_offset = $5, sha256 = $6, state = $7, signer_name = $8, capture_time = $9, capture_lat = $10,
			capture_lng = $11, create_time = $12, update_time = $13, expire_time = $14, writer = $15,
			writer_until = $16, attach_time = $17
			WHERE id = $1`,
			u.ID, string(u.Kind), u.ContentType, u.SizeBytes, u.CommittedOffset, u.SHA256, string(u.State), u.SignerName,
			d.NullTime(u.CaptureTime), lat, lng, d.Time(u.CreateTime), d.Time(u.UpdateTime), d.NullTime(u.ExpireTime),
			u.Writer, d.NullTime(u.WriterUntil), d.NullTime(u.AttachTime))
		if err != nil {
			return s.mapError(err, "update upload "+id)
		}
		out = u
		return nil
	})
	if err != nil {
		return dispatch.Upload{}, err
	}
	return out, nil
}

// SweepableUploads implements dispatch.UploadStore.
func (s *Uploads) SweepableUploads(ctx context.Context, now, committedBefore time.Time, limit int) ([]dispatch.Upload, error) {
	d := s.dialect
	rows, err := s.db.QueryContext(ctx, `SELECT `+uploadColumns+` FROM uploads
		WHERE (state = $1 AND expire_time <= $2) OR (state = $3 AND attach_time IS NULL AND update_time <= $4)
		ORDER BY update_time, id LIMIT $5`,
		string(dispatch.UploadInProgress), d.Time(now), string(dispatch.UploadCommitted), d.Time(committedBefore), limit)
	if err != nil {
		return nil, s.mapError(err, "list expired uploads")
	}
	defer rows.Close()
	var out []dispatch.Upload
	for rows.Next() {
		u, err := scanUpload(rows)
		if err != nil {
			return nil, s.mapError(err, "list expired uploads")
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, s.mapError(err, "list expired uploads")
	}
	return out, nil
}

// EndWriters implements dispatch.UploadStore. It reads the in-progress uploads through their partial
// index (uploads_expire), not the whole table.
func (s *Uploads) EndWriters(ctx context.Context, before time.Time) (int, error) {
	// The state is written out, not a parameter, so that the planner may take the partial index.
	res, err := s.db.ExecContext(ctx, `UPDATE uploads SET writer = '', writer_until = NULL
		WHERE state = 'in_progress' AND writer <> '' AND writer_until < $1`, s.dialect.Time(before))
	if err != nil {
		return 0, s.mapError(err, "end upload writers")
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, s.mapError(err, "end upload writers")
	}
	return int(n), nil
}

// PurgeUploads implements dispatch.UploadStore.
func (s *Uploads) PurgeUploads(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM uploads WHERE state IN ($1, $2) AND update_time < $3`,
		string(dispatch.UploadRejected), string(dispatch.UploadExpired), s.dialect.Time(before))
	if err != nil {
		return 0, s.mapError(err, "purge uploads")
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, s.mapError(err, "purge uploads")
	}
	return n, nil
}
