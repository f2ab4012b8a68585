// Package blob keeps the bytes of dispatch's proof uploads (dispatch.Blobs): Files in a directory, the
// default, and Postgres in a table of the dispatch schema, which every replica of a PostgreSQL deployment
// reads and resumes alike.
package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/google/uuid"

	"lastmile/internal/dispatch"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/database"
)

// DefaultDir is the directory of Files under the data directory.
const DefaultDir = "dispatch-proofs"

// Files keeps each upload's bytes in one file named by the upload id in a directory. Appends are
// fsynced, and so is the directory when a file is created, so acknowledged bytes survive a crash. An
// append refused for want of space (ENOSPC, EDQUOT) is Unavailable "the server's storage is full; try
// again later", as the database's writes are (database.Classify): the upload keeps its committed offset,
// and the same chunk succeeds once space is freed.
type Files struct {
	dir string
}

var _ dispatch.Blobs = (*Files)(nil)

// NewFiles returns the store in dir, creating the directory (mode 0700) when it does not exist.
func NewFiles(dir string) (*Files, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create proof directory %s: %w", dir, err)
	}
	return &Files{dir: dir}, nil
}

// checkID refuses anything but a canonical lowercase UUID, so an id never names a path outside the
// directory.
func checkID(id string) error {
	u, err := uuid.Parse(id)
	if err != nil || u.String() != id {
		return apperr.Errorf(apperr.Invalid, "upload id %q is not a UUID", id)
	}
	return nil
}

func (f *Files) path(id string) string { return filepath.Join(f.dir, id) }

// Append implements dispatch.Blobs.
func (f *Files) Append(ctx context.Context, uploadID string, offset int64, data []byte) error {
	if err := checkID(uploadID); err != nil {
		return err
	}
	if offset < 0 {
		return apperr.Errorf(apperr.Invalid, "negative offset %d", offset)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	p := f.path(uploadID)
	file, err := os.OpenFile(p, os.O_RDWR, 0)
	created := false
	if errors.Is(err, fs.ErrNotExist) && offset == 0 {
		file, err = os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		created = true
	}
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("append to upload %s at %d: no bytes stored", uploadID, offset)
	}
	if err != nil {
		return storageFull(fmt.Errorf("open bytes of upload %s: %w", uploadID, err))
	}
	err = appendAt(file, offset, data)
	if cerr := file.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return storageFull(fmt.Errorf("append to upload %s at %d: %w", uploadID, offset, err))
	}
	if created {
		if err := syncDir(f.dir); err != nil {
			return storageFull(fmt.Errorf("append to upload %s: %w", uploadID, err))
		}
	}
	return nil
}

// storageFull returns err as Unavailable "the server's storage is full; try again later" when it says
// the file system has no space left (database.IsStorageFull), as it is otherwise.
func storageFull(err error) error {
	if database.IsStorageFull(err) {
		return database.Classify(err)
	}
	return err
}

// appendAt truncates file to offset (when it holds more), writes data there and syncs it.
func appendAt(file *os.File, offset int64, data []byte) error {
	st, err := file.Stat()
	if err != nil {
		return err
	}
	if st.Size() < offset {
		return fmt.Errorf("%d bytes stored, fewer than the offset", st.Size())
	}
	if st.Size() > offset {
		if err := file.Truncate(offset); err != nil {
			return err
		}
	}
	if _, err := file.WriteAt(data, offset); err != nil {
		return err
	}
	return file.Sync()
}

// syncDir fsyncs a directory, so that a file created in it survives a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// Open implements dispatch.Blobs.
func (f *Files) Open(ctx context.Context, uploadID string) (io.ReadCloser, int64, error) {
	if err := checkID(uploadID); err != nil {
		return nil, 0, err
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	file, err := os.Open(f.path(uploadID))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, apperr.Errorf(apperr.NotFound, "no bytes of upload %s", uploadID)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("open bytes of upload %s: %w", uploadID, err)
	}
	st, err := file.Stat()
	if err != nil {
		file.Close()
		return nil, 0, fmt.Errorf("open bytes of upload %s: %w", uploadID, err)
	}
	return file, st.Size(), nil
}

// Delete implements dispatch.Blobs.
func (f *Files) Delete(ctx context.Context, uploadID string) error {
	if err := checkID(uploadID); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.Remove(f.path(uploadID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete bytes of upload %s: %w", uploadID, err)
	}
	return nil
}
