package blob

import (
	"context"
	"database/sql"
	"fmt"
	"io"

	"lastmile/internal/dispatch"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/database"
)

// Postgres keeps each upload's bytes as rows of the table proof_chunks (migration 00002 of package
// dispatch/postgres), one row per chunk at its offset, so that any replica reads them and resumes an
// upload another replica began. Each Append is one transaction.
type Postgres struct {
	db *sql.DB
}

var _ dispatch.Blobs = (*Postgres)(nil)

// NewPostgres returns the store on db, a PostgreSQL database (database.SQLDB) whose search_path
// resolves the dispatch schema's proof_chunks.
func NewPostgres(db *sql.DB) *Postgres { return &Postgres{db: db} }

// Append implements dispatch.Blobs.
func (p *Postgres) Append(ctx context.Context, uploadID string, offset int64, data []byte) error {
	if err := checkID(uploadID); err != nil {
		return err
	}
	if offset < 0 {
		return apperr.Errorf(apperr.Invalid, "negative offset %d", offset)
	}
	err := database.InTx(ctx, p.db, func(tx *sql.Tx) error {
		// Drop what lies at or beyond offset: whole chunks from it on, and the tail of a chunk across it.
		if _, err := tx.ExecContext(ctx, `DELETE FROM proof_chunks WHERE upload_id = $1 AND "offset" >= $2`, uploadID, offset); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `
			UPDATE proof_chunks SET data = substring(data FROM 1 FOR ($2 - "offset")::integer)
			WHERE upload_id = $1 AND "offset" < $2 AND "offset" + length(data) > $2`, uploadID, offset); err != nil {
			return err
		}
		var stored int64
		if err := tx.QueryRowContext(ctx, `SELECT coalesce(sum(length(data)), 0) FROM proof_chunks WHERE upload_id = $1`,
			uploadID).Scan(&stored); err != nil {
			return err
		}
		if stored != offset {
			return fmt.Errorf("%d bytes stored, not the offset", stored)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO proof_chunks (upload_id, "offset", data) VALUES ($1, $2, $3)`, uploadID, offset, data)
		return err
	})
	if err != nil {
		return database.Classify(fmt.Errorf("append to upload %s at %d: %w", uploadID, offset, err))
	}
	return nil
}

// Open implements dispatch.Blobs. The reader fetches one chunk at a time.
func (p *Postgres) Open(ctx context.Context, uploadID string) (io.ReadCloser, int64, error) {
	if err := checkID(uploadID); err != nil {
		return nil, 0, err
	}
	var n, size int64
	err := p.db.QueryRowContext(ctx, `SELECT count(*), coalesce(sum(length(data)), 0) FROM proof_chunks WHERE upload_id = $1`,
		uploadID).Scan(&n, &size)
	if err != nil {
		return nil, 0, database.Classify(fmt.Errorf("open bytes of upload %s: %w", uploadID, err))
	}
	if n == 0 {
		return nil, 0, apperr.Errorf(apperr.NotFound, "no bytes of upload %s", uploadID)
	}
	rows, err := p.db.QueryContext(ctx, `SELECT "offset", data FROM proof_chunks WHERE upload_id = $1 ORDER BY "offset"`, uploadID)
	if err != nil {
		return nil, 0, database.Classify(fmt.Errorf("open bytes of upload %s: %w", uploadID, err))
	}
	return &chunkReader{rows: rows, id: uploadID}, size, nil
}

// chunkReader reads an upload's chunks in offset order from one query, checking that they follow each
// other without gaps.
type chunkReader struct {
	rows *sql.Rows
	id   string
	next int64 // offset of the next chunk
	buf  []byte
}

func (r *chunkReader) Read(b []byte) (int, error) {
	for len(r.buf) == 0 {
		if !r.rows.Next() {
			if err := r.rows.Err(); err != nil {
				return 0, database.Classify(fmt.Errorf("read bytes of upload %s at %d: %w", r.id, r.next, err))
			}
			return 0, io.EOF
		}
		var off int64
		var data []byte
		if err := r.rows.Scan(&off, &data); err != nil {
			return 0, fmt.Errorf("read bytes of upload %s at %d: %w", r.id, r.next, err)
		}
		if off != r.next {
			return 0, fmt.Errorf("read bytes of upload %s: chunk at %d, want %d", r.id, off, r.next)
		}
		r.next += int64(len(data))
		r.buf = data
	}
	n := copy(b, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// Close releases the query.
func (r *chunkReader) Close() error { return r.rows.Close() }

// Delete implements dispatch.Blobs.
func (p *Postgres) Delete(ctx context.Context, uploadID string) error {
	if err := checkID(uploadID); err != nil {
		return err
	}
	if _, err := p.db.ExecContext(ctx, `DELETE FROM proof_chunks WHERE upload_id = $1`, uploadID); err != nil {
		return database.Classify(fmt.Errorf("delete bytes of upload %s: %w", uploadID, err))
	}
	return nil
}
