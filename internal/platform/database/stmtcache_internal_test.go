package database

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"modernc.org/sqlite"
)

// counts records what the statement cache asked of the driver.
type counts struct {
	mu       sync.Mutex
	prepared []string // queries prepared (for the cache)
	closed   []string // queries whose prepared statement was closed
	uncached int      // queries run on the driver's connection directly
}

func (c *counts) snapshot() (prepared, closed []string, uncached int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.prepared), slices.Clone(c.closed), c.uncached
}

// countingConn is the driver's connection, counting prepares and direct queries.
type countingConn struct {
	sqliteConn
	n *counts
}

func (c countingConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	s, err := c.sqliteConn.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	c.n.mu.Lock()
	c.n.prepared = append(c.n.prepared, query)
	c.n.mu.Unlock()
	return countingStmt{sqliteStmt: s.(sqliteStmt), query: query, n: c.n}, nil
}

func (c countingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	c.n.mu.Lock()
	c.n.uncached++
	c.n.mu.Unlock()
	return c.sqliteConn.ExecContext(ctx, query, args)
}

func (c countingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	c.n.mu.Lock()
	c.n.uncached++
	c.n.mu.Unlock()
	return c.sqliteConn.QueryContext(ctx, query, args)
}

type countingStmt struct {
	sqliteStmt
	query string
	n     *counts
}

func (s countingStmt) Close() error {
	s.n.mu.Lock()
	s.n.closed = append(s.n.closed, s.query)
	s.n.mu.Unlock()
	return s.sqliteStmt.Close()
}

// countingConnector opens cachedConns of size statements over countingConns.
type countingConnector struct {
	driver.Connector
	size int
	n    *counts
	// conns are the cachedConns opened, for the tests to look into.
	mu    sync.Mutex
	conns []*cachedConn
}

func (c *countingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	cc := newCachedConn(countingConn{sqliteConn: conn.(sqliteConn), n: c.n}, c.size)
	c.mu.Lock()
	c.conns = append(c.conns, cc)
	c.mu.Unlock()
	return cc, nil
}

// openCached opens a one-connection pool on a new database file whose connection caches size
// statements, and creates table t (id INTEGER PRIMARY KEY, v TEXT NOT NULL).
func openCached(t *testing.T, size int) (*sql.DB, *counts, *countingConnector) {
	t.Helper()
	base, err := sqlite.NewConnector(filepath.Join(t.TempDir(), "cache.db") + "?" + sqliteParams)
	if err != nil {
		t.Fatal(err)
	}
	// The table is made without the cache, so that the counts start empty.
	plain := sql.OpenDB(base)
	_, err = plain.ExecContext(t.Context(), "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
	if err := errors.Join(err, plain.Close()); err != nil {
		t.Fatal(err)
	}
	n := &counts{}
	c := &countingConnector{Connector: base, size: size, n: n}
	db := sql.OpenDB(c)
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db, n, c
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

const (
	insertT = "INSERT INTO t (id, v) VALUES ($1, $2)"
	selectT = "SELECT v FROM t WHERE id >= $1 ORDER BY id"
)

func values(t *testing.T, rows *sql.Rows) []string {
	t.Helper()
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestStmtCacheHits(t *testing.T) {
	ctx := ctxT(t)
	db, n, _ := openCached(t, 8)
	for i := range 10 {
		if _, err := db.ExecContext(ctx, insertT, i, string(rune('a'+i))); err != nil {
			t.Fatal(err)
		}
	}
	for range 10 {
		if got := queryValues(ctx, t, db, selectT, 7); !slices.Equal(got, []string{"h", "i", "j"}) {
			t.Fatalf("query = %v, want [h i j]", got)
		}
	}
	var v string
	for range 3 {
		if err := db.QueryRowContext(ctx, "SELECT v FROM t WHERE id = $1", 2).Scan(&v); err != nil || v != "c" {
			t.Fatalf("QueryRow = %q, %v; want c", v, err)
		}
	}
	prepared, closed, uncached := n.snapshot()
	if want := []string{insertT, selectT, "SELECT v FROM t WHERE id = $1"}; !slices.Equal(prepared, want) {
		t.Errorf("prepared %q, want each statement once: %q", prepared, want)
	}
	if len(closed) != 0 || uncached != 0 {
		t.Errorf("closed %q and ran %d uncached, want none", closed, uncached)
	}
}

func TestStmtCacheOpenRowsOfTheSameStatement(t *testing.T) {
	ctx := ctxT(t)
	db, n, _ := openCached(t, 8)
	for i := range 4 {
		if _, err := db.ExecContext(ctx, insertT, i, string(rune('a'+i))); err != nil {
			t.Fatal(err)
		}
	}
	err := InTx(ctx, db, func(tx *sql.Tx) error {
		outer, err := tx.QueryContext(ctx, selectT, 0)
		if err != nil {
			return err
		}
		defer outer.Close()
		var got []string
		for outer.Next() {
			var v string
			if err := outer.Scan(&v); err != nil {
				return err
			}
			// The same SQL while outer's rows are open: a statement of its own, and outer goes on.
			inner := queryValues(ctx, t, tx, selectT, 2)
			if !slices.Equal(inner, []string{"c", "d"}) {
				t.Errorf("inner query = %v, want [c d]", inner)
			}
			got = append(got, v)
		}
		if err := outer.Err(); err != nil {
			return err
		}
		if !slices.Equal(got, []string{"a", "b", "c", "d"}) {
			t.Errorf("outer query = %v, want [a b c d]", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Closed, the cached statement serves again.
	if got := queryValues(ctx, t, db, selectT, 3); !slices.Equal(got, []string{"d"}) {
		t.Fatalf("query after = %v, want [d]", got)
	}
	prepared, closed, uncached := n.snapshot()
	if !slices.Equal(prepared, []string{insertT, selectT}) || len(closed) != 0 || uncached != 4 {
		t.Errorf("prepared %q, closed %q, uncached %d; want [insert select], none, 4 (the inner queries)", prepared, closed, uncached)
	}
}

func TestStmtCacheEviction(t *testing.T) {
	ctx := ctxT(t)
	db, n, c := openCached(t, 2)
	q := func(i int) string { return "SELECT " + string(rune('0'+i)) }
	// Open rows of the first statement, then run two more: the first is evicted while busy.
	rows, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	open, err := rows.QueryContext(ctx, "SELECT v FROM t UNION ALL SELECT 'x' UNION ALL SELECT 'y'")
	if err != nil {
		t.Fatal(err)
	}
	if !open.Next() {
		t.Fatal(open.Err())
	}
	for i := range 2 {
		var got int
		if err := rows.QueryRowContext(ctx, q(i)).Scan(&got); err != nil || got != i {
			t.Fatalf("%s = %d, %v", q(i), got, err)
		}
	}
	_, closed, _ := n.snapshot()
	if len(closed) != 0 {
		t.Fatalf("closed %q while its rows are open, want none", closed)
	}
	var v string
	if err := open.Scan(&v); err != nil || v != "x" {
		t.Fatalf("first row = %q, %v; want x", v, err)
	}
	if !open.Next() {
		t.Fatal(open.Err())
	}
	if err := open.Scan(&v); err != nil || v != "y" {
		t.Fatalf("second row = %q, %v; want y", v, err)
	}
	if err := open.Close(); err != nil {
		t.Fatal(err)
	}
	_, closed, _ = n.snapshot()
	if want := []string{"SELECT v FROM t UNION ALL SELECT 'x' UNION ALL SELECT 'y'"}; !slices.Equal(closed, want) {
		t.Fatalf("closed %q after the evicted statement's rows closed, want %q", closed, want)
	}
	// Least recently used goes first: use q(0) again, then q(2) evicts q(1).
	for _, i := range []int{0, 2} {
		if _, err := rows.ExecContext(ctx, q(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	_, closed, _ = n.snapshot()
	if closed[len(closed)-1] != q(1) {
		t.Fatalf("closed %q, want %s last", closed, q(1))
	}
	c.mu.Lock()
	cc := c.conns[0]
	c.mu.Unlock()
	if len(cc.stmts) != 2 || cc.stmts[q(0)] == nil || cc.stmts[q(2)] == nil {
		t.Fatalf("cache holds %d statements, want %s and %s", len(cc.stmts), q(0), q(2))
	}
	// Closing the connection closes what it holds.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	_, closed, _ = n.snapshot()
	if got := closed[len(closed)-2:]; !slices.Contains(got, q(0)) || !slices.Contains(got, q(2)) {
		t.Fatalf("closed %q, want %s and %s closed with the connection", closed, q(0), q(2))
	}
	if len(cc.stmts) != 0 || cc.head != nil || cc.tail != nil {
		t.Fatalf("cache after Close holds %d statements", len(cc.stmts))
	}
}

func TestStmtCacheErrors(t *testing.T) {
	ctx := ctxT(t)
	db, n, _ := openCached(t, 8)
	if _, err := db.ExecContext(ctx, insertT, 1, "a"); err != nil {
		t.Fatal(err)
	}
	// A constraint violation fails as without the cache, and the statement is not kept.
	_, err := db.ExecContext(ctx, insertT, 1, "b")
	var coded interface{ Code() int }
	if !errors.As(err, &coded) || coded.Code() != 1555 { // SQLITE_CONSTRAINT_PRIMARYKEY
		t.Fatalf("duplicate insert: err = %v, want SQLITE_CONSTRAINT_PRIMARYKEY", err)
	}
	_, closed, _ := n.snapshot()
	if !slices.Equal(closed, []string{insertT}) {
		t.Fatalf("closed %q, want the failed statement", closed)
	}
	if _, err := db.ExecContext(ctx, insertT, 2, "b"); err != nil {
		t.Fatalf("insert after a failure: %v", err)
	}
	// A statement that does not compile is an error, and nothing is cached.
	if _, err := db.ExecContext(ctx, "INSERT INTO nowhere VALUES (1)"); err == nil {
		t.Fatal("insert into a missing table succeeded")
	}
	if _, err := db.QueryContext(ctx, "SELEC 1"); err == nil {
		t.Fatal("a syntax error succeeded")
	}
	// A canceled context ends a cached statement's run with the context's error.
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := db.ExecContext(canceled, insertT, 3, "c"); !errors.Is(err, context.Canceled) {
		t.Fatalf("exec with a canceled context: err = %v, want context.Canceled", err)
	}
	if got := queryValues(ctx, t, db, selectT, 0); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("rows = %v, want [a b]", got)
	}
	prepared, _, _ := n.snapshot()
	if !slices.Equal(prepared, []string{insertT, insertT, selectT}) {
		t.Fatalf("prepared %q, want the insert twice (again after its failure) and the select", prepared)
	}
}

func TestStmtCacheTransactions(t *testing.T) {
	ctx := ctxT(t)
	db, _, _ := openCached(t, 8)
	errRollback := errors.New("roll back")
	err := InTx(ctx, db, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, insertT, 1, "a"); err != nil {
			return err
		}
		if got := queryValues(ctx, t, tx, selectT, 0); !slices.Equal(got, []string{"a"}) {
			t.Errorf("inside the transaction = %v, want [a]", got)
		}
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		t.Fatalf("InTx = %v, want the rollback", err)
	}
	if got := queryValues(ctx, t, db, selectT, 0); len(got) != 0 {
		t.Fatalf("after the rollback = %v, want none", got)
	}
	err = InTx(ctx, db, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, insertT, 2, "b")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := queryValues(ctx, t, db, selectT, 0); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("after the commit = %v, want [b]", got)
	}
}

func TestStmtCacheSchemaChanges(t *testing.T) {
	ctx := ctxT(t)
	db, n, _ := openCached(t, 8)
	if _, err := db.ExecContext(ctx, insertT, 1, "a"); err != nil {
		t.Fatal(err)
	}
	columns := func() []string {
		t.Helper()
		rows, err := db.QueryContext(ctx, "SELECT * FROM t")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		cols, err := rows.Columns()
		if err != nil {
			t.Fatal(err)
		}
		return cols
	}
	if got := columns(); !slices.Equal(got, []string{"id", "v"}) {
		t.Fatalf("columns = %v", got)
	}
	// A migration, as a script (never cached), between two runs of the cached SELECT *.
	if _, err := db.ExecContext(ctx, "ALTER TABLE t ADD COLUMN w TEXT; CREATE INDEX t_w ON t (w);"); err != nil {
		t.Fatal(err)
	}
	if got := columns(); !slices.Equal(got, []string{"id", "v", "w"}) {
		t.Fatalf("columns after ALTER TABLE = %v, want [id v w]", got)
	}
	// The table dropped and made again with other columns.
	if _, err := db.ExecContext(ctx, "DROP TABLE t"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "CREATE TABLE t (k TEXT)"); err != nil {
		t.Fatal(err)
	}
	if got := columns(); !slices.Equal(got, []string{"k"}) {
		t.Fatalf("columns after the table was made again = %v, want [k]", got)
	}
	if _, err := db.ExecContext(ctx, insertT, 1, "a"); err == nil {
		t.Fatal("the cached insert ran against a table without its columns")
	}
	prepared, _, uncached := n.snapshot()
	if slices.Contains(prepared, "ALTER TABLE t ADD COLUMN w TEXT; CREATE INDEX t_w ON t (w);") || uncached != 1 {
		t.Fatalf("prepared %q, %d uncached: the script must run uncached, once", prepared, uncached)
	}
	var w int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema WHERE name = 't_w'").Scan(&w); err != nil || w != 0 {
		t.Fatalf("index t_w: count %d, %v; want 0 (dropped with its table)", w, err)
	}
}

func TestStmtCacheColumnTypes(t *testing.T) {
	ctx := ctxT(t)
	db, _, _ := openCached(t, 8)
	if _, err := db.ExecContext(ctx, insertT, 1, "a"); err != nil {
		t.Fatal(err)
	}
	rows, err := db.QueryContext(ctx, "SELECT id, v FROM t")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	if !rows.Next() {
		t.Fatal(rows.Err())
	}
	types, err := rows.ColumnTypes()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ct := range types {
		nullable, ok := ct.Nullable()
		got = append(got, ct.DatabaseTypeName(), ct.ScanType().String(), fmt.Sprint(nullable, ok))
	}
	// What the driver's rows answer (modernc reports every column nullable).
	if want := []string{"INTEGER", "int64", "true true", "TEXT", "string", "true true"}; !slices.Equal(got, want) {
		t.Fatalf("column types = %q, want %q", got, want)
	}
}

func TestIsScript(t *testing.T) {
	for q, want := range map[string]bool{
		"SELECT 1":             false,
		"SELECT 1;":            false,
		"SELECT 1 ; \n":        false,
		"SELECT 1; -- done\n":  false,
		"SELECT 1; /* done */": false,
		"SELECT 1; SELECT 2":   true,
		"CREATE TABLE a (x);\nCREATE TABLE b (y);\n":             true,
		"SELECT 1;-- a\nSELECT 2":                                true,
		"SELECT 1;/* a */SELECT 2":                               true,
		"SELECT ';'":                                             false,
		"SELECT 'it''s; fine'":                                   false,
		`SELECT "a;b" FROM t`:                                    false,
		"SELECT `a;b`, [c;d] FROM t":                             false,
		"-- one; two\nSELECT 1":                                  false,
		"SELECT 1 /* one; two */ + 2":                            false,
		"SELECT 1 -- one; two":                                   false,
		"SELECT 1 - 2; SELECT 3":                                 true,
		"SELECT 4 / 2; SELECT 3":                                 true,
		"SELECT 'unterminated; SELECT 2":                         false,
		"CREATE TRIGGER t AFTER INSERT ON a BEGIN SELECT 1; END": true,
	} {
		if got := isScript(q); got != want {
			t.Errorf("isScript(%q) = %v, want %v", q, got, want)
		}
	}
}

func TestOpenSQLiteCachesStatements(t *testing.T) {
	ctx := ctxT(t)
	db, err := OpenSQLite(ctx, filepath.Join(t.TempDir(), "open.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, pool := range []*sql.DB{db, Reader(db)} {
		conn, err := pool.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		err = conn.Raw(func(dc any) error {
			if _, ok := dc.(*cachedConn); !ok {
				t.Errorf("connection is a %T, want *cachedConn", dc)
			}
			if _, ok := dc.(interface{ Unwrap() driver.Conn }).Unwrap().(sqliteConn); !ok {
				t.Error("Unwrap does not return the driver's connection")
			}
			return nil
		})
		if err := errors.Join(err, conn.Close()); err != nil {
			t.Fatal(err)
		}
	}
}

// queryValues runs a query of one text column on q and returns its values.
func queryValues(ctx context.Context, t *testing.T, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, query string, args ...any) []string {
	t.Helper()
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return values(t, rows)
}
