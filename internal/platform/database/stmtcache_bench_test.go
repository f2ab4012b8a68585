package database

import (
	"database/sql"
	"database/sql/driver"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"modernc.org/sqlite"
)

// BenchmarkStmtCache runs a typical point read and a typical update of a store, on one connection,
// with and without the statement cache:
//
//	go test -run '^$' -bench StmtCache -benchmem ./internal/platform/database/
func BenchmarkStmtCache(b *testing.B) {
	const rows = 1000
	for _, cached := range []bool{false, true} {
		name := map[bool]string{false: "uncached", true: "cached"}[cached]
		dsn := filepath.Join(b.TempDir(), "bench.db") + "?" + sqliteParams
		var (
			c   driver.Connector
			err error
		)
		if cached {
			c, err = sqliteConnector(dsn)
		} else {
			c, err = sqlite.NewConnector(dsn)
		}
		if err != nil {
			b.Fatal(err)
		}
		db := sql.OpenDB(c)
		db.SetMaxOpenConns(1)
		defer db.Close()
		ctx := b.Context()
		if _, err := db.ExecContext(ctx, `CREATE TABLE tasks (id TEXT PRIMARY KEY, state INTEGER NOT NULL,
			courier_id TEXT, version INTEGER NOT NULL, doc BLOB NOT NULL)`); err != nil {
			b.Fatal(err)
		}
		doc := []byte(`{"ID":"` + strings.Repeat("x", 400) + `"}`)
		for i := range rows {
			if _, err := db.ExecContext(ctx, "INSERT INTO tasks (id, state, courier_id, version, doc) VALUES ($1, 1, $2, 1, $3)",
				fmt.Sprint("task-", i), fmt.Sprint("courier-", i%50), doc); err != nil {
				b.Fatal(err)
			}
		}
		b.Run("query/"+name, func(b *testing.B) {
			var (
				version int64
				got     []byte
			)
			i := 0
			for b.Loop() {
				err := db.QueryRowContext(ctx, "SELECT version, doc FROM tasks WHERE id = $1 AND state IN ($2, $3)",
					"task-"+fmt.Sprint(i%rows), 1, 2).Scan(&version, &got)
				if err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
		b.Run("exec/"+name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				if _, err := db.ExecContext(ctx, "UPDATE tasks SET state = $1, version = version + 1 WHERE id = $2 AND version > $3",
					1+i%2, "task-"+fmt.Sprint(i%rows), 0); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
