package database_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/lib/pq"

	"lastmile/internal/platform/database"
	"lastmile/internal/platform/database/databasetest"
)

// lib/pq arrays (River's database/sql driver sends every array so) reach PostgreSQL as the values they
// hold, through pgx's codecs rather than their text literal, NULLs and empty elements included.
func TestPostgresEncodesPQArraysAsTheirValues(t *testing.T) {
	ctx := testContext(t)
	db := database.SQLDB(databasetest.Postgres(t, "pqarrays"))
	t.Cleanup(func() { _ = db.Close() })
	at := time.Date(2026, 12, 1, 7, 50, 1, 123456000, time.UTC)
	edge := time.Date(2026, 12, 1, 23, 59, 59, 999999999, time.UTC) // rounded up, as PostgreSQL rounds the text literal
	type row struct {
		Texts              []string
		Int64s             []int64
		Int32s             []int32
		Bools              []bool
		Byteas             [][]byte
		Times              []time.Time
		Int16s             string
		NullText, NullByte bool
	}
	for range 2 { // the second time through the plans pgx kept for these types
		var (
			got    row
			micros []int64
		)
		err := db.QueryRowContext(ctx, `SELECT $1::text[], $2::bigint[], $3::int[], $4::bool[], $5::bytea[], (SELECT array_agg((extract(epoch FROM x) * 1000000)::bigint ORDER BY n) FROM unnest($6::timestamptz[]) WITH ORDINALITY AS u(x, n)),
				$7::smallint[]::text, $8::text[] IS NULL, $9::bytea[] IS NULL`,
			pq.Array([]string{"a", "b,c", `"q"`, "", "NULL"}), pq.Array([]int64{1, -2}), pq.Array([]int32{3}),
			pq.Array([]bool{true, false}), pq.Array([][]byte{{1, 2}, nil, {}}), pq.Array([]time.Time{at, at.Add(time.Hour), edge}),
			pq.Array([]int16{7, -8}), pq.Array([]string(nil)), pq.Array([][]byte(nil)),
		).Scan(pq.Array(&got.Texts), pq.Array(&got.Int64s), pq.Array(&got.Int32s), pq.Array(&got.Bools), pq.Array(&got.Byteas),
			pq.Array(&micros), &got.Int16s, &got.NullText, &got.NullByte)
		if err != nil {
			t.Fatalf("round trip of lib/pq arrays: %v", err)
		}
		for _, m := range micros {
			got.Times = append(got.Times, time.UnixMicro(m).UTC())
		}
		want := row{
			Texts: []string{"a", "b,c", `"q"`, "", "NULL"}, Int64s: []int64{1, -2}, Int32s: []int32{3}, Bools: []bool{true, false},
			Byteas: [][]byte{{1, 2}, {}, {}}, // pq sends a nil element as an empty bytea
			Times:  []time.Time{at, at.Add(time.Hour), time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)}, Int16s: "{7,-8}", NullText: true, NullByte: true,
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("lib/pq arrays read back (-want +got):\n%s", diff)
		}
	}
}
