package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"lastmile/internal/cli"
)

// migratedDataDir returns a new data directory holding the SQLite files `lastmile migrate` makes in an
// empty one, copied from a template migrated once per test binary: under -race the services' migrations
// cost seconds at every start (River's on SQLite above all), which start and startWithAdmin would pay
// each time. serve still runs its migrations at startup, which find nothing to do. The tests that pass a
// data directory of their own (t.TempDir(), say) start from an empty one, as a first install does.
func migratedDataDir(t *testing.T) string {
	t.Helper()
	files, err := migratedFiles()
	if err != nil {
		t.Fatalf("migrated data directory: %v", err)
	}
	dir := t.TempDir()
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

var migrated struct {
	once  sync.Once
	files map[string][]byte // SQLite file name: content
	err   error
}

func migratedFiles() (map[string][]byte, error) {
	migrated.once.Do(func() { migrated.files, migrated.err = migrateTemplate() })
	return migrated.files, migrated.err
}

func migrateTemplate() (map[string][]byte, error) {
	dir, err := os.MkdirTemp("", "lastmile-e2e-template-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // a hang guard
	defer cancel()
	var out bytes.Buffer
	err = cli.Run(ctx, []string{"lastmile", "migrate", "--data-dir", dir}, cli.Env{
		Getenv: func(string) string { return "" }, Stdout: &out, Stderr: &out,
	})
	if err != nil {
		return nil, fmt.Errorf("lastmile migrate: %w\n%s", err, out.String())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, ".db"):
			if files[name], err = os.ReadFile(filepath.Join(dir, name)); err != nil {
				return nil, err
			}
		case strings.HasSuffix(name, ".db-wal"):
			// migrate closes every database, which folds its WAL into the file and removes it.
			if fi, err := e.Info(); err != nil || fi.Size() > 0 {
				return nil, fmt.Errorf("%s left behind by lastmile migrate (%v)", name, err)
			}
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("lastmile migrate made no SQLite file in %s:\n%s", dir, out.String())
	}
	return files, nil
}
