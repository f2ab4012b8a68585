package database

import (
	"database/sql"
	"strconv"
	"testing"

	"lastmile/internal/platform/cputime"
)

// BenchmarkGroupInTx measures Group.InTx on SQLite with one caller at a time, so that every transaction
// holds one function, as the writer's transactions mostly do below saturation: a function that updates a
// row and inserts one. cpu-ns/op is the process's CPU time per call.
//
//	go test -c -o G.test ./internal/platform/database && ./G.test -test.run '^$' -test.bench GroupInTx -test.benchtime 5000x
func BenchmarkGroupInTx(b *testing.B) {
	ctx := b.Context()
	db, err := OpenSQLite(ctx, b.TempDir()+"/group.db")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	for _, q := range []string{
		`CREATE TABLE counters (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)`,
		`INSERT INTO counters (id, n) VALUES (1, 0)`,
		`CREATE TABLE names (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			b.Fatalf("%s: %v", q, err)
		}
	}
	g := NewGroup(db, 0)
	i := 0
	fn := func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE counters SET n = n + 1 WHERE id = 1`); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO names (name) VALUES ($1)`, "name-"+strconv.Itoa(i))
		return err
	}
	b.ReportAllocs()
	cpu := cputime.Process()
	for b.Loop() {
		i++
		if err := g.InTx(ctx, fn); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((cputime.Process()-cpu).Nanoseconds())/float64(b.N), "cpu-ns/op")
}
