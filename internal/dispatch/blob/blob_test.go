package blob_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.uber.org/goleak"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/blob"
	"lastmile/internal/dispatch/postgres"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/apperrtest"
	"lastmile/internal/platform/database"
	"lastmile/internal/platform/database/databasetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func testContext(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newID() string { return uuid.Must(uuid.NewV7()).String() }

// read returns every byte of id and the size Open reported.
func read(t *testing.T, b dispatch.Blobs, id string) ([]byte, int64) {
	t.Helper()
	rc, n, err := b.Open(testContext(t), id)
	if err != nil {
		t.Fatalf("Open(%s): %v", id, err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", id, err)
	}
	return got, n
}

func mustAppend(t *testing.T, b dispatch.Blobs, id string, off int64, data string) {
	t.Helper()
	if err := b.Append(testContext(t), id, off, []byte(data)); err != nil {
		t.Fatalf("Append(%s, %d, %q): %v", id, off, data, err)
	}
}

func wantContent(t *testing.T, b dispatch.Blobs, id, want string) {
	t.Helper()
	got, n := read(t, b, id)
	if string(got) != want || n != int64(len(want)) {
		t.Fatalf("content of %s = %q (size %d), want %q (size %d)", id, got, n, want, len(want))
	}
}

// run checks the contract of dispatch.Blobs on the store newBlobs makes.
func run(t *testing.T, newBlobs func(t *testing.T) dispatch.Blobs) {
	t.Run("AppendInOrder", func(t *testing.T) {
		b := newBlobs(t)
		id := newID()
		mustAppend(t, b, id, 0, "hello, ")
		mustAppend(t, b, id, 7, "proof")
		mustAppend(t, b, id, 12, "!")
		wantContent(t, b, id, "hello, proof!")
	})
	t.Run("RetriedChunkReplacesItself", func(t *testing.T) {
		b := newBlobs(t)
		id := newID()
		mustAppend(t, b, id, 0, "abc")
		mustAppend(t, b, id, 3, "def")
		// The second chunk's acknowledgement was lost; the app resends it from the committed offset 3,
		// shorter this time.
		mustAppend(t, b, id, 3, "DE")
		wantContent(t, b, id, "abcDE")
	})
	t.Run("TruncatesInsideAChunk", func(t *testing.T) {
		b := newBlobs(t)
		id := newID()
		mustAppend(t, b, id, 0, "abcdef")
		mustAppend(t, b, id, 2, "XY")
		wantContent(t, b, id, "abXY")
		mustAppend(t, b, id, 0, "z")
		wantContent(t, b, id, "z")
	})
	t.Run("GapRefused", func(t *testing.T) {
		b := newBlobs(t)
		id := newID()
		if err := b.Append(testContext(t), id, 5, []byte("x")); err == nil {
			t.Fatalf("Append at 5 of a new upload: nil error, want one")
		}
		mustAppend(t, b, id, 0, "ab")
		if err := b.Append(testContext(t), id, 3, []byte("x")); err == nil {
			t.Fatalf("Append at 3 after 2 bytes: nil error, want one")
		}
		wantContent(t, b, id, "ab")
	})
	t.Run("OpenMissing", func(t *testing.T) {
		b := newBlobs(t)
		_, _, err := b.Open(testContext(t), newID())
		apperrtest.WantCode(t, "Open", err, apperr.NotFound)
	})
	t.Run("Delete", func(t *testing.T) {
		b := newBlobs(t)
		id, other := newID(), newID()
		mustAppend(t, b, id, 0, "gone")
		mustAppend(t, b, other, 0, "kept")
		if err := b.Delete(testContext(t), id); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		_, _, err := b.Open(testContext(t), id)
		apperrtest.WantCode(t, "Open after Delete", err, apperr.NotFound)
		if err := b.Delete(testContext(t), id); err != nil {
			t.Fatalf("Delete again: %v, want nil", err)
		}
		wantContent(t, b, other, "kept")
		// Deleted bytes start again at 0.
		mustAppend(t, b, id, 0, "new")
		wantContent(t, b, id, "new")
	})
	t.Run("LargeChunks", func(t *testing.T) {
		b := newBlobs(t)
		id := newID()
		want := bytes.Repeat([]byte("0123456789abcdef"), 3*dispatch.MaxChunkBytes/16+7)
		for off := 0; off < len(want); off += dispatch.MaxChunkBytes {
			end := min(off+dispatch.MaxChunkBytes, len(want))
			if err := b.Append(testContext(t), id, int64(off), want[off:end]); err != nil {
				t.Fatalf("Append at %d: %v", off, err)
			}
		}
		got, n := read(t, b, id)
		if !bytes.Equal(got, want) || n != int64(len(want)) {
			t.Fatalf("content: %d bytes (size %d), equal %v; want %d bytes", len(got), n, bytes.Equal(got, want), len(want))
		}
	})
	t.Run("BadID", func(t *testing.T) {
		b := newBlobs(t)
		for _, id := range []string{"", "../x", "0195F2A0-0000-7000-8000-000000000000", "not-a-uuid"} {
			apperrtest.WantCode(t, "Append("+id+")", b.Append(testContext(t), id, 0, []byte("x")), apperr.Invalid)
			_, _, err := b.Open(testContext(t), id)
			apperrtest.WantCode(t, "Open("+id+")", err, apperr.Invalid)
			apperrtest.WantCode(t, "Delete("+id+")", b.Delete(testContext(t), id), apperr.Invalid)
		}
	})
}

func TestFiles(t *testing.T) {
	run(t, func(t *testing.T) dispatch.Blobs {
		f, err := blob.NewFiles(filepath.Join(t.TempDir(), blob.DefaultDir))
		if err != nil {
			t.Fatalf("NewFiles: %v", err)
		}
		return f
	})
}

// TestFilesLayout checks that a file is named by its upload id and is readable by its owner only.
func TestFilesLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "proofs")
	f, err := blob.NewFiles(dir)
	if err != nil {
		t.Fatalf("NewFiles: %v", err)
	}
	id := newID()
	mustAppend(t, f, id, 0, "bytes")
	st, err := os.Stat(filepath.Join(dir, id))
	if err != nil {
		t.Fatalf("stat: %v", err)
	}
	if st.Size() != 5 || st.Mode().Perm() != 0o600 {
		t.Fatalf("file size %d mode %v, want 5 and -rw-------", st.Size(), st.Mode().Perm())
	}
}

func TestPostgres(t *testing.T) {
	run(t, func(t *testing.T) dispatch.Blobs {
		pool := databasetest.Postgres(t, postgres.Schema)
		if err := database.MigratePostgres(testContext(t), pool, postgres.Migrations()); err != nil {
			t.Fatalf("MigratePostgres: %v", err)
		}
		db := database.SQLDB(pool)
		t.Cleanup(func() { db.Close() })
		return blob.NewPostgres(db)
	})
}

func TestForDatabase(t *testing.T) {
	dir := t.TempDir()
	b, err := blob.ForDatabase(database.SQLite, dir, nil)
	if err != nil {
		t.Fatalf("ForDatabase(sqlite): %v", err)
	}
	id := newID()
	mustAppend(t, b, id, 0, "x")
	if _, err := os.Stat(filepath.Join(dir, blob.DefaultDir, id)); err != nil {
		t.Fatalf("the file store is not in the data directory: %v", err)
	}
	if b, err := blob.ForDatabase(database.Postgres, dir, nil); err != nil || b == nil {
		t.Fatalf("ForDatabase(postgres) = %v, %v", b, err)
	}
	if _, err := blob.ForDatabase("mysql", dir, nil); err == nil {
		t.Fatalf("ForDatabase(mysql): nil error")
	}
}

// TestFilesFullDiskIsUnavailable: an append the file system refuses for want of space (here the upload's
// file is /dev/full, where every write fails with ENOSPC) is Unavailable "the server's storage is full;
// try again later", not an internal error; once space is freed the same append succeeds.
func TestFilesFullDiskIsUnavailable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "proofs")
	f, err := blob.NewFiles(dir)
	if err != nil {
		t.Fatalf("NewFiles: %v", err)
	}
	id := newID()
	if err := os.Symlink("/dev/full", filepath.Join(dir, id)); err != nil {
		t.Fatal(err)
	}
	err = f.Append(testContext(t), id, 0, []byte("bytes"))
	apperrtest.WantCode(t, "Append on a full disk", err, apperr.Unavailable)
	if got, want := apperr.MessageOf(err), "the server's storage is full; try again later"; got != want {
		t.Errorf("Append on a full disk: message %q, want %q", got, want)
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Append on a full disk: %v, want ENOSPC kept for the log", err)
	}
	if err := os.Remove(filepath.Join(dir, id)); err != nil { // space freed
		t.Fatal(err)
	}
	mustAppend(t, f, id, 0, "bytes")
	rc, n, err := f.Open(testContext(t), id)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if b, err := io.ReadAll(rc); err != nil || n != 5 || string(b) != "bytes" {
		t.Fatalf("after space was freed: %q (%d), %v; want \"bytes\"", b, n, err)
	}
}
