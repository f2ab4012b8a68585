package sqllog_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"lastmile/internal/platform/database"
	"lastmile/internal/platform/database/databasetest"
	"lastmile/internal/platform/eventlog"
	"lastmile/internal/platform/eventlog/sqllog"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const service = "svc"

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// store is a migrated service database.
type store struct {
	dialect database.Dialect
	db      *sql.DB
	pool    *pgxpool.Pool // PostgreSQL only
}

func sqliteStore(t *testing.T) store {
	t.Helper()
	ctx := testContext(t)
	db, err := database.OpenSQLite(ctx, filepath.Join(t.TempDir(), service+".db"))
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := database.MigrateSQLite(ctx, db, sqllog.Migrations(database.SQLite, service)); err != nil {
		t.Fatalf("MigrateSQLite: %v", err)
	}
	return store{dialect: database.SQLite, db: db}
}

func postgresStore(t *testing.T) store {
	t.Helper()
	pool := databasetest.Postgres(t, service)
	if err := database.MigratePostgres(testContext(t), pool, sqllog.Migrations(database.Postgres, service)); err != nil {
		t.Fatalf("MigratePostgres: %v", err)
	}
	db := database.SQLDB(pool)
	t.Cleanup(func() { _ = db.Close() })
	return store{dialect: database.Postgres, db: db, pool: pool}
}

func forEachEngine(t *testing.T, test func(t *testing.T, s store)) {
	t.Run("sqlite", func(t *testing.T) { test(t, sqliteStore(t)) })
	t.Run("postgres", func(t *testing.T) { test(t, postgresStore(t)) })
}

// appendTx appends events in one transaction, committed when fail is nil, and returns them as stored.
func appendTx(ctx context.Context, s store, fail error, events ...eventlog.Event) ([]eventlog.Event, error) {
	var out []eventlog.Event
	err := database.InTx(ctx, s.db, func(tx *sql.Tx) error {
		for _, e := range events {
			seq, err := sqllog.Append(ctx, tx, s.dialect, e)
			if err != nil {
				return err
			}
			e.Seq = seq
			if e.Payload == nil {
				e.Payload = []byte{}
			}
			out = append(out, e)
		}
		return fail
	})
	return out, err
}

func TestSourceReadsCommittedEventsInOrder(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s store) {
		ctx := testContext(t)
		src := sqllog.NewSource(s.db, s.dialect)
		if head, err := src.Head(ctx); err != nil || head != 0 {
			t.Errorf("Head() of a new log = %d, %v; want 0, nil", head, err)
		}
		at := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
		errRollback := errors.New("roll back")
		if _, err := appendTx(ctx, s, errRollback, eventlog.Event{Topic: "svc.lost", At: at}); !errors.Is(err, errRollback) {
			t.Fatalf("rolled-back append = %v, want %v", err, errRollback)
		}
		want, err := appendTx(ctx, s, nil,
			eventlog.Event{Topic: "svc.a", Key: "k1", Payload: []byte{1, 2}, At: at},
			eventlog.Event{Topic: "svc.b", Key: "k2", At: at})
		if err != nil {
			t.Fatalf("append: %v", err)
		}
		for i := range want {
			want[i].At = at.Truncate(time.Microsecond)
		}
		got, floor, err := src.Read(ctx, 0, 10)
		if err != nil || floor != 0 {
			t.Fatalf("Read(0) floor %d, err %v; want 0, nil", floor, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Read(0) (-want +got):\n%s", diff)
		}
		if got, _, err := src.Read(ctx, want[0].Seq, 10); err != nil || len(got) != 1 || got[0].Seq != want[1].Seq {
			t.Errorf("Read(%d) = %v, %v; want the second event only", want[0].Seq, got, err)
		}
		if got, _, err := src.Read(ctx, 0, 1); err != nil || len(got) != 1 || got[0].Seq != want[0].Seq {
			t.Errorf("Read(0, limit 1) = %v, %v; want the first event only", got, err)
		}
		if head, err := src.Head(ctx); err != nil || head != want[1].Seq {
			t.Errorf("Head() = %d, %v; want %d", head, err, want[1].Seq)
		}
	})
}

// TestAppendMany: the events of one AppendMany get increasing numbers in their order and read back as
// appended, after an Append of the same transaction; one invalid event appends none of them.
func TestAppendMany(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s store) {
		ctx := testContext(t)
		src := sqllog.NewSource(s.db, s.dialect)
		at := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
		want := []eventlog.Event{
			{Topic: "svc.a", Key: "k0", Payload: []byte("first"), At: at},
			{Topic: "svc.b", Key: "k1", Payload: []byte{0, 1, 2}, At: at.Add(time.Second)},
			{Topic: "svc.c", Key: "k2", At: at.Add(2 * time.Second)},
			{Topic: "svc.a", Key: "k1", Payload: []byte("last"), At: at.Add(-time.Second)},
		}
		err := database.InTx(ctx, s.db, func(tx *sql.Tx) error {
			seq, err := sqllog.Append(ctx, tx, s.dialect, want[0])
			if err != nil {
				return err
			}
			want[0].Seq = seq
			if none, err := sqllog.AppendMany(ctx, tx, s.dialect, nil); err != nil || len(none) != 0 {
				t.Errorf("AppendMany(no events) = %v, %v; want none, nil", none, err)
			}
			seqs, err := sqllog.AppendMany(ctx, tx, s.dialect, slices.Clone(want[1:]))
			if err != nil {
				return err
			}
			if len(seqs) != 3 {
				t.Fatalf("AppendMany(3 events) = %d numbers, want 3", len(seqs))
			}
			for i, seq := range seqs {
				want[i+1].Seq = seq
			}
			return nil
		})
		if err != nil {
			t.Fatalf("append: %v", err)
		}
		for i := range want {
			want[i].At = want[i].At.Truncate(time.Microsecond)
			if want[i].Payload == nil {
				want[i].Payload = []byte{}
			}
			if i > 0 && want[i].Seq <= want[i-1].Seq {
				t.Errorf("event %d has seq %d after %d, want increasing", i, want[i].Seq, want[i-1].Seq)
			}
		}
		got, _, err := src.Read(ctx, 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Read after AppendMany (-want +got):\n%s", diff)
		}

		err = database.InTx(ctx, s.db, func(tx *sql.Tx) error {
			_, err := sqllog.AppendMany(ctx, tx, s.dialect, []eventlog.Event{{Topic: "svc.ok"}, {Topic: ""}})
			return err
		})
		if !errors.Is(err, sqllog.ErrInvalidEvent) {
			t.Errorf("AppendMany(an event without a topic) = %v, want ErrInvalidEvent", err)
		}
		if got, _, err := src.Read(ctx, want[3].Seq, 10); err != nil || len(got) != 0 {
			t.Errorf("Read after the refused AppendMany = %v, %v; want nothing", got, err)
		}
	})
}

func TestAppendRejectsInvalidEvents(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s store) {
		ctx := testContext(t)
		long := string(make([]byte, sqllog.MaxTopicLen+1))
		for _, bad := range []eventlog.Event{
			{Topic: ""},
			{Topic: long},
			{Topic: "svc.a", Key: long},
			{Topic: "svc.a", Payload: make([]byte, sqllog.MaxPayload+1)},
		} {
			if _, err := appendTx(ctx, s, nil, bad); !errors.Is(err, sqllog.ErrInvalidEvent) {
				t.Errorf("Append(topic %d bytes, key %d bytes, payload %d bytes) = %v, want ErrInvalidEvent",
					len(bad.Topic), len(bad.Key), len(bad.Payload), err)
			}
		}
	})
}

func TestPruneKeepsTheNewest(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s store) {
		ctx := testContext(t)
		src := sqllog.NewSource(s.db, s.dialect)
		now := time.Now()
		events, err := appendTx(ctx, s, nil,
			eventlog.Event{Topic: "svc.a", At: now.Add(-3 * time.Hour)},
			eventlog.Event{Topic: "svc.a", At: now.Add(-2 * time.Hour)},
			eventlog.Event{Topic: "svc.a", At: now},
			eventlog.Event{Topic: "svc.a", At: now})
		if err != nil {
			t.Fatalf("append: %v", err)
		}
		for _, tc := range []struct {
			r     eventlog.Retention
			n     int64
			floor int64
		}{
			{eventlog.Retention{MaxAge: 150 * time.Minute}, 1, events[0].Seq},
			{eventlog.Retention{MaxAge: 150 * time.Minute}, 0, events[0].Seq},
			{eventlog.Retention{MaxAge: time.Hour, MaxCount: 1}, 2, events[2].Seq},
		} {
			n, err := src.Prune(ctx, tc.r, now)
			if err != nil || n != tc.n {
				t.Errorf("Prune(%+v) = %d, %v; want %d, nil", tc.r, n, err, tc.n)
			}
			if _, floor, err := src.Read(ctx, 0, 1); err != nil || floor != tc.floor {
				t.Errorf("after Prune(%+v): floor %d, %v; want %d", tc.r, floor, err, tc.floor)
			}
			// The floor comes with no event too: after the newest, and with limit 0.
			last := events[len(events)-1].Seq
			if got, floor, err := src.Read(ctx, last, 10); err != nil || len(got) != 0 || floor != tc.floor {
				t.Errorf("after Prune(%+v): Read(%d) = %v, floor %d, %v; want no event, floor %d", tc.r, last, got, floor, err, tc.floor)
			}
			if got, floor, err := src.Read(ctx, 0, 0); err != nil || len(got) != 0 || floor != tc.floor {
				t.Errorf("after Prune(%+v): Read(0, limit 0) = %v, floor %d, %v; want no event, floor %d", tc.r, got, floor, err, tc.floor)
			}
		}
	})
}

func TestListenerNudgesOnCommitOnPostgres(t *testing.T) {
	s := postgresStore(t)
	ctx, cancel := context.WithCancel(testContext(t))
	nudges := make(chan struct{}, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sqllog.Listener(s.pool)(ctx, eventlog.Backoff{Base: time.Millisecond, Max: time.Millisecond}, func() { nudges <- struct{}{} })
	}()
	defer func() { cancel(); <-done }()
	wait := func(what string) {
		t.Helper()
		select {
		case <-nudges:
		case <-testContext(t).Done():
			t.Fatalf("no nudge %s", what)
		}
	}
	wait("after connecting")
	if _, err := appendTx(testContext(t), s, nil, eventlog.Event{Topic: "svc.a"}, eventlog.Event{Topic: "svc.b"}); err != nil {
		t.Fatalf("append: %v", err)
	}
	wait("after a commit")
	if _, err := appendTx(testContext(t), s, nil, eventlog.Event{Topic: "svc.c"}); err != nil {
		t.Fatalf("append: %v", err)
	}
	wait("after a second commit")
}

// TestAppendWithPostgres: the statement appends one event per row its write returns, with the columns
// given over the write's RETURNING columns and the parameters, and nothing when the write returns no
// row; the write and the events commit together.
func TestAppendWithPostgres(t *testing.T) {
	s := postgresStore(t)
	ctx := testContext(t)
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE things (id text PRIMARY KEY, state text NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)
	stmt := sqllog.AppendWithPostgres(`INSERT INTO things (id, state) SELECT unnest($1::text[]), $2 ON CONFLICT (id) DO NOTHING RETURNING id, state`,
		"$3::text", "id", "convert_to(state, 'UTF8')", "$4::timestamptz")
	run := func(ids ...string) []int64 {
		t.Helper()
		rows, err := s.db.QueryContext(ctx, stmt, ids, "new", "svc.thing", at)
		if err != nil {
			t.Fatalf("append with insert of %v: %v", ids, err)
		}
		defer rows.Close()
		var seqs []int64
		for rows.Next() {
			var seq int64
			if err := rows.Scan(&seq); err != nil {
				t.Fatal(err)
			}
			seqs = append(seqs, seq)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return seqs
	}
	if seqs := run("a", "b"); len(seqs) != 2 {
		t.Fatalf("two rows inserted: %d events appended, want 2", len(seqs))
	}
	if seqs := run("a"); len(seqs) != 0 {
		t.Errorf("no row inserted: events %v appended, want none", seqs)
	}
	got, _, err := sqllog.NewSource(s.db, s.dialect).Read(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, func(a, b eventlog.Event) int { return strings.Compare(a.Key, b.Key) })
	want := []eventlog.Event{
		{Topic: "svc.thing", Key: "a", Payload: []byte("new"), At: at},
		{Topic: "svc.thing", Key: "b", Payload: []byte("new"), At: at},
	}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(eventlog.Event{}, "Seq")); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM things`).Scan(&n); err != nil || n != 2 {
		t.Errorf("things = %d, %v; want 2", n, err)
	}

	// A statement before the append, over the written rows: it runs, in the same transaction.
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE notes (id text PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	withNote := sqllog.AppendWithPostgres(`UPDATE things SET state = $1 WHERE id = $2 RETURNING id, state`,
		"$3::text", "id", "convert_to(state, 'UTF8')", "$4::timestamptz", `INSERT INTO notes (id) SELECT id FROM written RETURNING id`)
	var seq int64
	if err := s.db.QueryRowContext(ctx, withNote, "done", "b", "svc.thing", at).Scan(&seq); err != nil {
		t.Fatalf("append with update and note: %v", err)
	}
	if _, err := s.db.ExecContext(ctx, withNote, "again", "b", "svc.thing", at); err == nil {
		t.Error("second note of b: no error, want the unique violation (and nothing written)")
	}
	var note, state string
	if err := s.db.QueryRowContext(ctx, `SELECT n.id, t.state FROM notes n JOIN things t USING (id)`).Scan(&note, &state); err != nil || note != "b" || state != "done" {
		t.Errorf("note %q of a thing in state %q, %v; want b, done", note, state, err)
	}
	if got, _, err := sqllog.NewSource(s.db, s.dialect).Read(ctx, 0, 10); err != nil || len(got) != 3 || got[2].Seq != seq || string(got[2].Payload) != "done" {
		t.Errorf("events after the update = %v, %v; want a third, done, seq %d", got, err, seq)
	}
}
