package cli

import (
	"errors"
	"fmt"

	"lastmile/internal/platform/dirlock"
)

// lockDataDir takes the lock of dataDir (<data-dir>/LOCK) for the command cmd, so that no two lastmile
// processes use one data directory at once: two servers would each run their own copy of the state
// (SQLite files, certificates) and race on the files. serve holds it until it exits, with PostgreSQL
// too (the directory still holds the development CA and its keys); certs holds it while it writes the
// certificates; migrate while it migrates the SQLite files. When another process holds it, the error
// names the directory and that process's pid, and ends with advice.
func lockDataDir(dataDir, cmd, advice string) (*dirlock.Lock, error) {
	l, err := dirlock.Acquire(dataDir, "lastmile "+cmd)
	var held *dirlock.HeldError
	if errors.As(err, &held) {
		return nil, fmt.Errorf("%s: %w; a data directory belongs to one lastmile process at a time: %s", cmd, err, advice)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cmd, err)
	}
	return l, nil
}
