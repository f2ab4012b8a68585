package blob

import (
	"database/sql"
	"fmt"
	"path/filepath"

	"lastmile/internal/dispatch"
	"lastmile/internal/platform/database"
)

// ForDatabase returns the blob store that goes with dispatch's database: Files in dataDir/DefaultDir on
// SQLite (one process owns the data directory), Postgres on db on PostgreSQL, so that every replica
// reads and resumes every upload. db must carry dispatch's PostgreSQL migrations (proof_chunks).
func ForDatabase(d database.Dialect, dataDir string, db *sql.DB) (dispatch.Blobs, error) {
	switch d {
	case database.SQLite:
		return NewFiles(filepath.Join(dataDir, DefaultDir))
	case database.Postgres:
		return NewPostgres(db), nil
	}
	return nil, fmt.Errorf("blob store for database %q: unsupported", d)
}
