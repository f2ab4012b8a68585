package dispatch_test

import (
	"context"
	"testing"
	"time"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/dispatchtest"
	"lastmile/internal/geo"
	"lastmile/internal/platform/apperr"
)

// A process leased a task and was killed before it worked it; a new process starts on the same data.
// On SQLite (one process per database) the dead lease is ended at start and the task offered at once;
// on PostgreSQL, whose other replicas may be alive, the lease stays until it runs out. The clock stands
// still: the lease (dispatch.DefaultLease) never runs out here.
func TestLeaseOfAKilledProcessAtRestart(t *testing.T) {
	first := dispatchtest.Start(t, dispatchtest.Config{NoRun: true})
	a := first.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 100), geo.Bicycle, true)
	tk := create(t, first, nil)
	ctx := context.Background()
	leased, err := first.Store.LeaseDue(ctx, "killed-process", first.Clock.Now(), dispatch.DefaultLease, 10)
	if err != nil || len(leased) != 1 || leased[0].ID != tk.ID {
		t.Fatalf("LeaseDue = %d tasks, %v; want task %s", len(leased), err, tk.ID)
	}

	second := dispatchtest.Start(t, dispatchtest.Config{DB: first.DB, Pool: first.Pool, Couriers: first.Couriers, Clock: first.Clock})
	if first.Pool == nil {
		offeredNow(t, second, tk.ID, a.ID)
		return
	}
	// PostgreSQL: the work loop runs (a new task is offered to the courier) and leaves the lease alone.
	other := create(t, second, nil)
	offeredNow(t, second, other.ID, a.ID)
	got, err := second.Service.GetTask(dispatchtest.Dispatcher(), tk.ID, dispatch.ViewFull)
	if err != nil || got.State != dispatch.StatePending || got.Version != tk.Version {
		t.Fatalf("task = %s at version %d, %v; want PENDING at version %d", got.State, got.Version, err, tk.Version)
	}
	if owner := leaseOwner(t, second, tk.ID); owner != "killed-process" {
		t.Fatalf("task %s leased to %q, want still to killed-process", tk.ID, owner)
	}
}

// leaseOwner returns the owner of task id's lease, "" for none.
func leaseOwner(t *testing.T, sys *dispatchtest.System, id string) string {
	t.Helper()
	var owner *string
	if err := sys.DB.QueryRow(`SELECT lease_owner FROM tasks WHERE id = $1`, id).Scan(&owner); err != nil {
		t.Fatalf("read the lease of task %s: %v", id, err)
	}
	if owner == nil {
		return ""
	}
	return *owner
}

// A process that a courier's upload stream was writing to is killed; a new one starts on the same data a
// second later, and the app resumes the upload. On SQLite the dead stream's writer lease is ended at
// start and the upload resumed at once; on PostgreSQL, where the stream may be another replica's, the
// lease stays until it runs out (dispatch.UploadWriterLease; the clock does not get there) and the
// resume is ABORTED.
func TestUploadWriterOfAKilledProcessAtRestart(t *testing.T) {
	first := dispatchtest.Start(t, dispatchtest.Config{NoRun: true})
	holder := first.AddCourier(t, dispatchtest.Berlin, geo.Car, true)
	tk := create(t, first, nil)
	if _, err := first.Service.AssignTask(dispatchtest.Dispatcher(), dispatch.AssignRequest{ID: tk.ID, CourierID: holder.ID}); err != nil {
		t.Fatalf("AssignTask: %v", err)
	}
	file := jpegFile(5000)
	req := dispatch.UploadStartReq{TaskID: tk.ID, Kind: dispatch.ProofPhoto, ContentType: "image/jpeg", SizeBytes: int64(len(file)), SHA256: sum(file)}
	if _, u, err := first.Service.StartUpload(holder.Ctx, req); err != nil {
		t.Fatalf("StartUpload: %v", err)
	} else {
		req.UploadID = u.ID // the killed process never released its writer
	}

	first.Clock.Advance(time.Second)
	second := dispatchtest.Start(t, dispatchtest.Config{DB: first.DB, Pool: first.Pool, Couriers: first.Couriers, Clock: first.Clock})
	// The work loop ran (a new task is offered): the start's work is done.
	second.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 100), geo.Bicycle, true)
	offered(t, second, create(t, second, nil).ID)
	w, u, err := second.Service.StartUpload(holder.Ctx, req)
	if first.Pool != nil {
		if apperr.CodeOf(err) != apperr.Aborted {
			t.Fatalf("resume on PostgreSQL = %+v, %v; want ABORTED while the lease holds", u, err)
		}
		return
	}
	if err != nil || u.ID != req.UploadID || u.CommittedOffset != 0 {
		t.Fatalf("resume = %+v, %v; want upload %s resumed at 0", u, err, req.UploadID)
	}
	if u = upload(t, w, file, 2048); u.State != dispatch.UploadCommitted {
		t.Fatalf("resumed upload %s, want committed", u.State)
	}
}
