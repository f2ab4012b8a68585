package bench_test

import (
	"context"
	"database/sql"
	"fmt"

	"lastmile/internal/platform/database"
)

// storeSize is what dispatch's database holds: its tasks and decisions, the database's size, and the
// decisions' share of it.
type storeSize struct {
	tasks, decisions int64
	// dbBytes is the database's size: SQLite's pages (page_count × page_size, the WAL's included),
	// PostgreSQL's dispatch schema's relations with their indexes and TOAST.
	dbBytes int64
	// decisionBytes is the decisions table's size (SQLite: its pages and its index's, from dbstat;
	// PostgreSQL: pg_total_relation_size); docBytes the stored forms' bytes, JSON or binary (SQLite:
	// length; PostgreSQL: pg_column_size, after compression).
	decisionBytes, docBytes int64
}

func (s storeSize) String() string {
	per := func(n int64) float64 { return float64(n) / float64(max(s.decisions, 1)) }
	return fmt.Sprintf("database %.1f MB: %d tasks, %d decisions in %.1f MB (%.0f B per decision, its stored form %.0f B)",
		float64(s.dbBytes)/1e6, s.tasks, s.decisions, float64(s.decisionBytes)/1e6, per(s.decisionBytes), per(s.docBytes))
}

// measureStore measures what db, dispatch's database, holds.
func measureStore(ctx context.Context, db *sql.DB, dialect database.Dialect) (storeSize, error) {
	var s storeSize
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM tasks`).Scan(&s.tasks); err != nil {
		return s, err
	}
	// A decision is in bin when the column exists and the row has one (sqlstore's decisionbin.go),
	// in doc otherwise.
	var hasBin bool
	col := `SELECT count(*) > 0 FROM pragma_table_info('decisions') WHERE name = 'bin'`
	if dialect == database.Postgres {
		col = `SELECT count(*) > 0 FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'decisions' AND column_name = 'bin'`
	}
	if err := db.QueryRowContext(ctx, col).Scan(&hasBin); err != nil {
		return s, err
	}
	size := "length"
	if dialect == database.Postgres {
		size = "pg_column_size"
	}
	stored := size + "(doc)"
	if hasBin {
		stored = "CASE WHEN bin IS NULL THEN " + size + "(doc) ELSE " + size + "(bin) END"
	}
	q := `SELECT count(*), coalesce(sum(` + stored + `), 0) FROM decisions`
	if err := db.QueryRowContext(ctx, q).Scan(&s.decisions, &s.docBytes); err != nil {
		return s, err
	}
	if dialect == database.Postgres {
		err := db.QueryRowContext(ctx, `SELECT pg_total_relation_size('decisions'),
			(SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
				WHERE n.nspname = current_schema() AND c.relkind = 'r')::bigint`).Scan(&s.decisionBytes, &s.dbBytes)
		return s, err
	}
	err := db.QueryRowContext(ctx, `SELECT (SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()),
		(SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name IN ('decisions', 'decisions_task', 'sqlite_autoindex_decisions_1'))`).Scan(&s.dbBytes, &s.decisionBytes)
	return s, err
}
