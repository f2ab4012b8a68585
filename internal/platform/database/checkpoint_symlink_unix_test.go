//go:build unix

package database

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCheckpointerFollowsSymlinks opens a database through a symbolic link to its file: SQLite keeps
// the WAL index beside the file linked to, and the checkpointer must read it there.
func TestCheckpointerFollowsSymlinks(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	target := filepath.Join(dir, "target.db")
	db, err := OpenSQLite(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.db")
	if err := os.Symlink(target, link); err != nil {
		t.Fatalf("symbolic link: %v", err)
	}
	db, err = OpenSQLite(ctx, link)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fillWAL(ctx, t, db, CheckpointPages)
	v, _ := sqliteCheckpointers.Load(db)
	cp := v.(*checkpointer)
	waitFor(t, "the checkpointer of a database opened through a link to run", func() bool {
		runs, _ := cp.stats()
		return runs >= 1
	})
}
