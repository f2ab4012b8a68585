package sqlstore_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/postgres"
	"lastmile/internal/dispatch/sqlite"
	"lastmile/internal/dispatch/sqlstore"
	"lastmile/internal/geo"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/apperrtest"
	"lastmile/internal/platform/database"
	"lastmile/internal/platform/database/databasetest"
)

func testContext(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newID() string { return uuid.Must(uuid.NewV7()).String() }

func sqliteUploads(t *testing.T) dispatch.UploadStore {
	db := databasetest.SQLite(t)
	if err := database.MigrateSQLite(testContext(t), db, sqlite.Migrations()); err != nil {
		t.Fatalf("MigrateSQLite: %v", err)
	}
	return sqlite.New(db).Uploads()
}

func postgresUploads(t *testing.T) dispatch.UploadStore {
	pool := databasetest.Postgres(t, postgres.Schema)
	if err := database.MigratePostgres(testContext(t), pool, postgres.Migrations()); err != nil {
		t.Fatalf("MigratePostgres: %v", err)
	}
	db := database.SQLDB(pool)
	t.Cleanup(func() { db.Close() })
	return sqlstore.NewUploads(db, database.Postgres)
}

func TestUploadsSQLite(t *testing.T)   { runUploads(t, sqliteUploads) }
func TestUploadsPostgres(t *testing.T) { runUploads(t, postgresUploads) }

var t0 = time.Date(2026, 11, 30, 12, 0, 0, 123456000, time.UTC)

func sample(taskID string) dispatch.Upload {
	return dispatch.Upload{
		ID:              newID(),
		TaskID:          taskID,
		CourierID:       "courier-1",
		Kind:            dispatch.ProofSignature,
		ContentType:     "image/png",
		SizeBytes:       1000,
		SHA256:          "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		State:           dispatch.UploadInProgress,
		SignerName:      "Ada Lovelace",
		CaptureTime:     t0.Add(-time.Minute),
		CaptureLocation: &geo.LatLng{Lat: 52.52, Lng: 13.405},
		CreateTime:      t0,
		UpdateTime:      t0,
		ExpireTime:      t0.Add(dispatch.UploadRetention),
		Writer:          "w1",
		WriterUntil:     t0.Add(time.Minute),
	}
}

func runUploads(t *testing.T, newStore func(t *testing.T) dispatch.UploadStore) {
	t.Run("RoundTrip", func(t *testing.T) {
		s := newStore(t)
		ctx := testContext(t)
		u := sample(newID())
		if err := s.CreateUpload(ctx, u, atMost(8)); err != nil {
			t.Fatalf("CreateUpload: %v", err)
		}
		got, err := s.GetUpload(ctx, u.ID)
		if err != nil {
			t.Fatalf("GetUpload: %v", err)
		}
		if diff := cmp.Diff(u, got); diff != "" {
			t.Fatalf("GetUpload (-want +got):\n%s", diff)
		}
		apperrtest.WantCode(t, "CreateUpload again", s.CreateUpload(ctx, u, atMost(8)), apperr.Conflict)
		_, err = s.GetUpload(ctx, newID())
		apperrtest.WantCode(t, "GetUpload of nothing", err, apperr.NotFound)

		// No capture location or time: NULLs read back as nil and zero.
		v := sample(u.TaskID)
		v.CaptureLocation, v.CaptureTime, v.WriterUntil, v.Writer = nil, time.Time{}, time.Time{}, ""
		if err := s.CreateUpload(ctx, v, atMost(8)); err != nil {
			t.Fatalf("CreateUpload: %v", err)
		}
		got, err = s.GetUpload(ctx, v.ID)
		if err != nil {
			t.Fatalf("GetUpload: %v", err)
		}
		if diff := cmp.Diff(v, got); diff != "" {
			t.Fatalf("GetUpload (-want +got):\n%s", diff)
		}
	})
	t.Run("Update", func(t *testing.T) {
		s := newStore(t)
		ctx := testContext(t)
		u := sample(newID())
		if err := s.CreateUpload(ctx, u, atMost(8)); err != nil {
			t.Fatalf("CreateUpload: %v", err)
		}
		want := u
		want.CommittedOffset = 1000
		want.State = dispatch.UploadCommitted
		want.ExpireTime = time.Time{}
		want.Writer, want.WriterUntil = "", time.Time{}
		want.UpdateTime = t0.Add(time.Second)
		want.AttachTime = t0.Add(2 * time.Second)
		got, err := s.UpdateUpload(ctx, u.ID, func(cur dispatch.Upload) (dispatch.Upload, error) {
			if diff := cmp.Diff(u, cur); diff != "" {
				t.Errorf("closure got (-want +got):\n%s", diff)
			}
			return want, nil
		})
		if err != nil {
			t.Fatalf("UpdateUpload: %v", err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("UpdateUpload (-want +got):\n%s", diff)
		}
		if got, _ := s.GetUpload(ctx, u.ID); !cmp.Equal(want, got) {
			t.Fatalf("GetUpload after update: %s", cmp.Diff(want, got))
		}
		// A failing closure writes nothing and its error comes back.
		boom := errors.New("boom")
		_, err = s.UpdateUpload(ctx, u.ID, func(cur dispatch.Upload) (dispatch.Upload, error) {
			cur.CommittedOffset = 1
			return cur, boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("UpdateUpload with failing closure: %v, want boom", err)
		}
		if got, _ := s.GetUpload(ctx, u.ID); got.CommittedOffset != 1000 {
			t.Fatalf("committed offset %d after failed update, want 1000", got.CommittedOffset)
		}
		_, err = s.UpdateUpload(ctx, newID(), func(cur dispatch.Upload) (dispatch.Upload, error) { return cur, nil })
		apperrtest.WantCode(t, "UpdateUpload of nothing", err, apperr.NotFound)
		// Values the table cannot hold are Invalid.
		_, err = s.UpdateUpload(ctx, u.ID, func(cur dispatch.Upload) (dispatch.Upload, error) {
			cur.CommittedOffset = 1001
			return cur, nil
		})
		apperrtest.WantCode(t, "UpdateUpload past the size", err, apperr.Invalid)
	})
	t.Run("Limit", func(t *testing.T) {
		s := newStore(t)
		ctx := testContext(t)
		task := newID()
		for i := range 3 {
			if err := s.CreateUpload(ctx, sample(task), atMost(3)); err != nil {
				t.Fatalf("CreateUpload %d: %v", i, err)
			}
		}
		apperrtest.WantCode(t, "4th CreateUpload", s.CreateUpload(ctx, sample(task), atMost(3)), apperr.ResourceExhausted)
		// Other tasks have their own limit, and only IN_PROGRESS uploads count.
		if err := s.CreateUpload(ctx, sample(newID()), atMost(3)); err != nil {
			t.Fatalf("CreateUpload of another task: %v", err)
		}
		done := sample(task)
		done.State, done.ExpireTime, done.CommittedOffset = dispatch.UploadCommitted, time.Time{}, done.SizeBytes
		if err := s.CreateUpload(ctx, done, atMost(0)); err == nil {
			t.Fatalf("CreateUpload with max 0: nil error")
		}
		// admit sees the task's uploads counted by courier and state.
		rejected := sample(task)
		rejected.State, rejected.ExpireTime = dispatch.UploadRejected, time.Time{}
		if err := s.CreateUpload(ctx, rejected, atMost(8)); err != nil {
			t.Fatalf("CreateUpload rejected: %v", err)
		}
		if err := s.CreateUpload(ctx, done, atMost(8)); err != nil {
			t.Fatalf("CreateUpload committed: %v", err)
		}
		another := sample(task)
		another.CourierID = "courier-2"
		if err := s.CreateUpload(ctx, another, atMost(8)); err != nil {
			t.Fatalf("CreateUpload of another courier: %v", err)
		}
		var got dispatch.UploadCounts
		_ = s.CreateUpload(ctx, sample(task), func(counts dispatch.UploadCounts) error {
			got = counts
			return apperr.Errorf(apperr.ResourceExhausted, "no")
		})
		want := dispatch.UploadCounts{
			"courier-1": {dispatch.UploadInProgress: 3, dispatch.UploadCommitted: 1, dispatch.UploadRejected: 1},
			"courier-2": {dispatch.UploadInProgress: 1},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("counts admit saw (-want +got):\n%s", diff)
		}
	})
	t.Run("LimitConcurrent", func(t *testing.T) {
		s := newStore(t)
		ctx := testContext(t)
		task := newID()
		const n, max = 12, 5
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() { errs[i] = s.CreateUpload(ctx, sample(task), atMost(max)) })
		}
		wg.Wait()
		ok, exhausted := 0, 0
		for _, err := range errs {
			switch apperr.CodeOf(err) {
			case "":
				ok++
			case apperr.ResourceExhausted:
				exhausted++
			default:
				t.Errorf("CreateUpload: %v", err)
			}
		}
		if ok != max || exhausted != n-max {
			t.Fatalf("%d created and %d refused, want %d and %d", ok, exhausted, max, n-max)
		}
	})
	t.Run("SweepAndPurge", func(t *testing.T) {
		s := newStore(t)
		ctx := testContext(t)
		task := newID()
		now := t0.Add(48 * time.Hour)
		mk := func(mod func(u *dispatch.Upload)) dispatch.Upload {
			u := sample(task)
			mod(&u)
			if err := s.CreateUpload(ctx, u, atMost(100)); err != nil {
				t.Fatalf("CreateUpload: %v", err)
			}
			return u
		}
		committed := func(update time.Time, attach time.Time) func(u *dispatch.Upload) {
			return func(u *dispatch.Upload) {
				u.State, u.ExpireTime, u.CommittedOffset, u.UpdateTime, u.AttachTime = dispatch.UploadCommitted, time.Time{}, u.SizeBytes, update, attach
			}
		}
		expired := mk(func(u *dispatch.Upload) { u.ExpireTime = now })
		mk(func(u *dispatch.Upload) { u.ExpireTime = now.Add(time.Microsecond) })
		oldCommitted := mk(committed(now.Add(-25*time.Hour), time.Time{}))
		mk(committed(now.Add(-23*time.Hour), time.Time{}))
		mk(committed(now.Add(-25*time.Hour), now.Add(-24*time.Hour)))
		rejected := mk(func(u *dispatch.Upload) {
			u.State, u.ExpireTime, u.UpdateTime = dispatch.UploadRejected, time.Time{}, now.Add(-8*24*time.Hour)
		})
		mk(func(u *dispatch.Upload) {
			u.State, u.ExpireTime, u.UpdateTime = dispatch.UploadExpired, time.Time{}, now.Add(-6*24*time.Hour)
		})

		got, err := s.SweepableUploads(ctx, now, now.Add(-dispatch.UploadRetention), 10)
		if err != nil {
			t.Fatalf("SweepableUploads: %v", err)
		}
		var ids []string
		for _, u := range got {
			ids = append(ids, u.ID)
		}
		// Oldest update first.
		if want := []string{expired.ID, oldCommitted.ID}; !cmp.Equal(ids, want) {
			t.Fatalf("SweepableUploads = %v, want %v", ids, want)
		}
		if got, err := s.SweepableUploads(ctx, now, now.Add(-dispatch.UploadRetention), 1); err != nil || len(got) != 1 {
			t.Fatalf("SweepableUploads limit 1 = %d uploads, %v; want 1", len(got), err)
		}

		n, err := s.PurgeUploads(ctx, now.Add(-dispatch.UploadPurgeAfter))
		if err != nil || n != 1 {
			t.Fatalf("PurgeUploads = %d, %v; want 1", n, err)
		}
		_, err = s.GetUpload(ctx, rejected.ID)
		apperrtest.WantCode(t, "GetUpload of purged", err, apperr.NotFound)
	})
	t.Run("EndWriters", func(t *testing.T) {
		// Writer leases running out before the bound end; those at or after it, and uploads no longer in
		// progress, are left as they are.
		s := newStore(t)
		ctx := testContext(t)
		bound := t0.Add(time.Minute)
		dead, live, done := sample(newID()), sample(newID()), sample(newID())
		dead.WriterUntil = bound.Add(-time.Microsecond)
		live.WriterUntil = bound
		done.WriterUntil, done.State, done.ExpireTime, done.CommittedOffset = bound.Add(-time.Second), dispatch.UploadCommitted, time.Time{}, done.SizeBytes
		for _, u := range []dispatch.Upload{dead, live, done} {
			if err := s.CreateUpload(ctx, u, atMost(8)); err != nil {
				t.Fatalf("CreateUpload: %v", err)
			}
		}
		if n, err := s.EndWriters(ctx, bound); err != nil || n != 1 {
			t.Fatalf("EndWriters = %d, %v; want 1", n, err)
		}
		dead.Writer, dead.WriterUntil = "", time.Time{}
		for _, want := range []dispatch.Upload{dead, live, done} {
			if got, err := s.GetUpload(ctx, want.ID); err != nil || !cmp.Equal(want, got) {
				t.Errorf("GetUpload after EndWriters = %+v, %v; want %+v", got, err, want)
			}
		}
		if n, err := s.EndWriters(ctx, bound); err != nil || n != 0 {
			t.Errorf("EndWriters again = %d, %v; want 0", n, err)
		}
	})
}

// atMost is the admit function of a limit of n IN_PROGRESS uploads per task, as the domain passes one.
func atMost(n int) func(dispatch.UploadCounts) error {
	return func(counts dispatch.UploadCounts) error {
		inProgress := 0
		for _, byState := range counts {
			inProgress += byState[dispatch.UploadInProgress]
		}
		if inProgress >= n {
			return apperr.Errorf(apperr.ResourceExhausted, "%d uploads in progress, limit %d", inProgress, n)
		}
		return nil
	}
}
