package database

import (
	"context"
	"database/sql/driver"
	"errors"
	"strings"

	"modernc.org/sqlite"
)

// StmtCacheSize is how many prepared statements each connection of a database opened with OpenSQLite
// keeps, by SQL text, the least recently used going first. ExecContext and QueryContext of a cached SQL
// text skip SQLite's parser and planner (sqlite3_prepare), which otherwise costs more than running a
// typical statement. Scripts (several statements) are not cached; a statement whose rows are still
// open when its SQL runs again on the same connection is left alone, the second run preparing its own;
// a statement whose run failed is finalized, not kept. SQLite prepares a cached statement again by
// itself after a schema change (migrations), so callers need to do nothing.
const StmtCacheSize = 128

// The interfaces modernc.org/sqlite's connections implement and database/sql looks for; a cachedConn
// implements them all by delegating, so wrapping a connection changes nothing but where Exec and Query
// find their statement.
type sqliteConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
}

// sqliteConnector returns the connector of the modernc.org/sqlite driver for dsn, whose connections
// keep StmtCacheSize prepared statements each (cachedConn).
func sqliteConnector(dsn string) (driver.Connector, error) {
	c, err := sqlite.NewConnector(dsn)
	if err != nil {
		return nil, err
	}
	return stmtCacheConnector{Connector: c, size: StmtCacheSize}, nil
}

// stmtCacheConnector wraps each connection its Connector opens in a cachedConn of size statements.
type stmtCacheConnector struct {
	driver.Connector
	size int
}

// Connect implements driver.Connector.
func (c stmtCacheConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	sc, ok := conn.(sqliteConn)
	if !ok {
		// Not the driver this was written for: run it as it is rather than hide its interfaces.
		return conn, nil
	}
	return newCachedConn(sc, c.size), nil
}

// cachedConn is a SQLite connection that keeps the statements it executes prepared, so that running
// the same SQL again skips SQLite's parser and planner (sqlite3_prepare), which otherwise costs more
// than executing a typical statement: database/sql prepares every ExecContext and QueryContext afresh
// and finalizes the statement after it.
//
// The cache is per connection (a prepared statement belongs to one) and bounded: the size least
// recently used statements are kept, and the others finalized. A statement that is still producing rows
// when its SQL runs again on the connection (rows of the same query open twice in one transaction) is
// not disturbed: the second run gets a statement of its own, prepared and finalized as without the
// cache. Scripts (more than one statement, as migrations run them) are never cached: the driver runs
// them one statement after the other, parsing as it goes. A statement whose execution fails is
// finalized rather than kept, so no state of a failed run carries over. SQLite prepares a cached
// statement again by itself when the schema changed since (sqlite3_prepare_v2), so migrations need no
// care.
//
// database/sql never calls a connection from two goroutines at once (it holds the connection's lock
// for every call, Rows.Next and Rows.Close included), so the cache needs no lock of its own.
type cachedConn struct {
	sqliteConn
	size  int
	stmts map[string]*cachedStmt
	// The LRU list: head is the most recently used statement, tail the least.
	head, tail *cachedStmt
	// shield: statements run under context.Background instead of their own contexts, so that a
	// context that ends never interrupts one (see Group; database/sql still refuses to start a
	// statement whose context has ended).
	shield bool
}

// cachedStmt is one cached prepared statement.
type cachedStmt struct {
	query      string
	stmt       driver.Stmt
	prev, next *cachedStmt
	// busy: rows of this statement are open; the statement is reset when they close.
	busy bool
	// evicted: the statement left the cache while busy, and is finalized when its rows close.
	evicted bool
}

// The statement interfaces modernc's statements implement and cachedConn calls.
type sqliteStmt interface {
	driver.Stmt
	driver.StmtExecContext
	driver.StmtQueryContext
}

func newCachedConn(c sqliteConn, size int) *cachedConn {
	return &cachedConn{sqliteConn: c, size: size, stmts: make(map[string]*cachedStmt)}
}

// Unwrap returns the driver's connection, for code that needs its own methods through sql.Conn.Raw
// (modernc.org/sqlite's Limit, backups, ...).
func (c *cachedConn) Unwrap() driver.Conn { return c.sqliteConn }

// ExecContext implements driver.ExecerContext with a cached statement.
func (c *cachedConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if c.shield {
		ctx = context.Background()
	}
	cs, err := c.get(ctx, query)
	if err != nil || cs == nil {
		if err != nil {
			return nil, err
		}
		return c.sqliteConn.ExecContext(ctx, query, args)
	}
	res, err := cs.stmt.(sqliteStmt).ExecContext(ctx, args)
	if err != nil {
		c.drop(cs)
		return nil, err
	}
	return res, nil
}

// QueryContext implements driver.QueryerContext with a cached statement, marked busy until the rows
// close.
func (c *cachedConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if c.shield {
		ctx = context.Background()
	}
	cs, err := c.get(ctx, query)
	if err != nil || cs == nil {
		if err != nil {
			return nil, err
		}
		return c.sqliteConn.QueryContext(ctx, query, args)
	}
	rows, err := cs.stmt.(sqliteStmt).QueryContext(ctx, args)
	if err != nil {
		c.drop(cs)
		return nil, err
	}
	sr, ok := rows.(sqliteRows)
	if !ok {
		// Rows that a wrapper would hide interfaces of: not this driver's; run the query uncached.
		err := rows.Close()
		c.drop(cs)
		if err != nil {
			return nil, err
		}
		return c.sqliteConn.QueryContext(ctx, query, args)
	}
	cs.busy = true
	return &cachedRows{sqliteRows: sr, c: c, cs: cs}, nil
}

// get returns the cached statement for query, preparing it on a miss, and moves it to the front of
// the LRU list. It returns nil, and no error, when query must run without the cache: a script, or a
// statement whose rows are open.
func (c *cachedConn) get(ctx context.Context, query string) (*cachedStmt, error) {
	if cs, ok := c.stmts[query]; ok {
		if cs.busy {
			return nil, nil
		}
		c.unlink(cs)
		c.pushFront(cs)
		return cs, nil
	}
	if isScript(query) {
		return nil, nil
	}
	stmt, err := c.sqliteConn.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if _, ok := stmt.(sqliteStmt); !ok {
		return nil, errors.Join(errors.New("sqlite statement cache: the driver's statement lacks ExecContext or QueryContext"), stmt.Close())
	}
	cs := &cachedStmt{query: query, stmt: stmt}
	c.stmts[query] = cs
	c.pushFront(cs)
	if len(c.stmts) > c.size {
		c.evict(c.tail)
	}
	return cs, nil
}

// evict removes cs from the cache and finalizes it, or leaves that to its rows when they are open.
func (c *cachedConn) evict(cs *cachedStmt) error {
	c.unlink(cs)
	delete(c.stmts, cs.query)
	if cs.busy {
		cs.evicted = true
		return nil
	}
	return cs.stmt.Close()
}

// drop evicts cs after its execution failed. The failure is what the caller reports; an error
// finalizing the statement adds nothing to it.
func (c *cachedConn) drop(cs *cachedStmt) {
	_ = c.evict(cs)
}

func (c *cachedConn) pushFront(cs *cachedStmt) {
	cs.prev, cs.next = nil, c.head
	if c.head != nil {
		c.head.prev = cs
	}
	c.head = cs
	if c.tail == nil {
		c.tail = cs
	}
}

func (c *cachedConn) unlink(cs *cachedStmt) {
	if cs.prev != nil {
		cs.prev.next = cs.next
	} else {
		c.head = cs.next
	}
	if cs.next != nil {
		cs.next.prev = cs.prev
	} else {
		c.tail = cs.prev
	}
	cs.prev, cs.next = nil, nil
}

// Close finalizes the cached statements and closes the connection.
func (c *cachedConn) Close() error {
	var errs []error
	for c.tail != nil {
		errs = append(errs, c.evict(c.tail))
	}
	errs = append(errs, c.sqliteConn.Close())
	return errors.Join(errs...)
}

// isScript reports whether query holds more than one statement: whether anything but blanks and
// comments follows a semicolon that ends a statement. Semicolons inside string literals, quoted
// identifiers and comments are skipped as SQLite's tokenizer skips them; a semicolon inside a
// trigger body (CREATE TRIGGER ... BEGIN ...; END) counts, which only costs such a statement the
// cache.
func isScript(query string) bool {
	ended := false // a statement-ending semicolon was seen
	for i := 0; i < len(query); i++ {
		switch ch := query[i]; ch {
		case ' ', '\t', '\n', '\r', '\f':
		case ';':
			ended = true
		case '-':
			if i+1 < len(query) && query[i+1] == '-' {
				for i < len(query) && query[i] != '\n' {
					i++
				}
				continue
			}
			if ended {
				return true
			}
		case '/':
			if i+1 < len(query) && query[i+1] == '*' {
				end := strings.Index(query[i+2:], "*/")
				if end < 0 {
					return false // an unterminated comment runs to the end
				}
				i += 2 + end + 1
				continue
			}
			if ended {
				return true
			}
		default:
			if ended {
				return true
			}
			var closer byte
			switch ch {
			case '\'', '"', '`':
				closer = ch
			case '[':
				closer = ']'
			default:
				continue
			}
			// A quoted string or identifier; a doubled quote inside it is the quote itself, which
			// this loop sees as the literal ending and another starting at once.
			end := strings.IndexByte(query[i+1:], closer)
			if end < 0 {
				return false // unterminated: SQLite will refuse it
			}
			i += 1 + end
		}
	}
	return false
}

// The result-set interfaces modernc's rows implement and database/sql looks for (Rows.ColumnTypes).
type sqliteRows interface {
	driver.Rows
	driver.RowsColumnTypeDatabaseTypeName
	driver.RowsColumnTypeLength
	driver.RowsColumnTypeNullable
	driver.RowsColumnTypePrecisionScale
	driver.RowsColumnTypeScanType
}

// cachedRows are the rows of a cached statement: closing them resets the statement (the driver does)
// and makes it available again, or finalizes it when it left the cache meanwhile.
type cachedRows struct {
	sqliteRows
	c  *cachedConn
	cs *cachedStmt
}

// Close implements driver.Rows.
func (r *cachedRows) Close() error {
	err := r.sqliteRows.Close()
	cs := r.cs
	if cs == nil {
		return err
	}
	r.cs = nil
	cs.busy = false
	switch {
	case cs.evicted:
		return errors.Join(err, cs.stmt.Close())
	case err != nil:
		// The reset failed: the statement is not fit to run again.
		r.c.drop(cs)
	}
	return err
}
