package dispatch_test

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/google/uuid"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/dispatchtest"
	"lastmile/internal/geo"
)

// TestDeliveryWithPhotoProof runs the whole proof of delivery on the dispatchtest system: a task that
// requires a photo at the dropoff is refused delivery without one, delivered with a committed photo,
// and its customer reads the photo.
func TestDeliveryWithPhotoProof(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true})
	customer := uuid.NewString()
	req := dispatchtest.Request(uuid.NewString(), dispatchtest.Berlin, customer)
	req.ProofRequirements = []dispatch.ProofRequirement{{Kind: dispatch.ProofPhoto, Stage: dispatch.StageDropoff, Policy: dispatch.ProofRequired}}
	tk, err := sys.Service.CreateTask(dispatchtest.Customer(customer), req)
	if err != nil {
		t.Fatalf("CreateTask: %v", err)
	}
	c := sys.AddCourier(t, dispatchtest.Berlin, geo.Car, true)
	if _, err := sys.Service.AssignTask(dispatchtest.Dispatcher(), dispatch.AssignRequest{ID: tk.ID, CourierID: c.ID}); err != nil {
		t.Fatalf("AssignTask: %v", err)
	}
	exec := func(id string, cmd dispatch.Command) dispatch.CommandResult {
		return sys.Service.Execute(c.Ctx, c.ID, id, cmd)
	}
	if r := exec("pickup", dispatch.Command{Pickup: &dispatch.PickupCmd{TaskID: tk.ID}}); r.Err != nil {
		t.Fatalf("pickup: %+v", r.Err)
	}
	if r := exec("deliver-1", dispatch.Command{Deliver: &dispatch.DeliverCmd{TaskID: tk.ID}}); r.Err == nil || r.Err.Reason != dispatch.ReasonProofRequired {
		t.Fatalf("delivery without the photo = %+v, want PROOF_REQUIRED", r.Err)
	}

	file := jpegFile(5000)
	upCtx, cancel := context.WithCancel(c.Ctx)
	defer cancel()
	w, u, err := sys.Service.StartUpload(upCtx, dispatch.UploadStartReq{
		TaskID: tk.ID, Kind: dispatch.ProofPhoto, ContentType: "image/jpeg", SizeBytes: int64(len(file)), SHA256: sum(file),
	})
	if err != nil {
		t.Fatalf("StartUpload: %v", err)
	}
	defer w.Close(context.Background())
	if u = upload(t, w, file, 2048); u.State != dispatch.UploadCommitted {
		t.Fatalf("upload %s, want committed", u.State)
	}
	r := exec("deliver-2", dispatch.Command{Deliver: &dispatch.DeliverCmd{TaskID: tk.ID, UploadIDs: []string{u.ID}}})
	if r.Err != nil {
		t.Fatalf("delivery with the photo: %+v", r.Err)
	}
	if r.Task.State != dispatch.StateDelivered || len(r.Task.Proofs) != 1 || r.Task.Proofs[0].UploadID != u.ID || r.Task.Proofs[0].SHA256 != sum(file) {
		t.Fatalf("delivered task %s with proofs %+v, want the photo", r.Task.State, r.Task.Proofs)
	}
	ct, n, rc, err := sys.Service.ProofContent(dispatchtest.Customer(customer), tk.ID, u.ID)
	if err != nil {
		t.Fatalf("ProofContent as the customer: %v", err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil || ct != "image/jpeg" || n != int64(len(b)) || !bytes.Equal(b, file) {
		t.Fatalf("ProofContent = %q, %d, %d bytes, %v; want the JPEG", ct, n, len(b), err)
	}
}
