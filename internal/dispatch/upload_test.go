package dispatch_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/blob"
	"lastmile/internal/dispatch/dispatchtest"
	"lastmile/internal/dispatch/postgres"
	"lastmile/internal/dispatch/sqlite"
	"lastmile/internal/dispatch/sqlstore"
	"lastmile/internal/geo"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/apperrtest"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/database"
	"lastmile/internal/platform/database/databasetest"
)

// upTasks is the real SQLite store, with helpers to write tasks as tests need them.
type upTasks struct {
	*sqlstore.Store
	t *testing.T
}

// put writes t: it creates it, or replaces the stored task with it.
func (s upTasks) put(t dispatch.Task) {
	s.t.Helper()
	ctx := upContext(s.t, context.Background())
	if _, err := s.GetTask(ctx, t.ID); apperr.CodeOf(err) == apperr.NotFound {
		t.CreatedBy, t.RequestID = "uploads-test", t.ID
		if _, _, err := s.CreateTask(ctx, t); err != nil {
			s.t.Fatalf("CreateTask: %v", err)
		}
		return
	}
	if _, err := s.UpdateTask(ctx, t.ID, func(cur dispatch.Task) (dispatch.Change, error) {
		next := t.Clone()
		next.Version, next.CreatedBy, next.RequestID = cur.Version, cur.CreatedBy, cur.RequestID
		return dispatch.Change{Task: next}, nil
	}); err != nil {
		s.t.Fatalf("UpdateTask: %v", err)
	}
}

func upUser(id string, roles ...string) context.Context {
	return auth.WithPrincipal(context.Background(), auth.Principal{Kind: auth.User, Subject: id, Roles: roles})
}

func upCourier(id string) context.Context     { return upUser(id, auth.RoleCourier) }
func upCustomerCtx(id string) context.Context { return upUser(id, auth.RoleCustomer) }

// upMetrics counts Upload observations by state.
type upMetrics struct {
	dispatch.NopMetrics
	mu sync.Mutex
	n  map[string]int
}

func (m *upMetrics) Upload(state string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.n[state]++
}

func (m *upMetrics) count(state string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.n[state]
}

// upFixture is a service with real upload and blob stores (SQLite, files), a task held by courier 1,
// a second courier who was offered it, a stranger courier, its customer and another customer.
type upFixture struct {
	svc     *dispatch.Service
	tasks   upTasks
	uploads dispatch.UploadStore
	blobs   dispatch.Blobs
	// blobDir is the directory of blobs (blob.Files).
	blobDir string
	clock   *dispatchtest.Clock
	metrics *upMetrics
	task    dispatch.Task

	holder, offered, stranger           context.Context
	holderID, offeredID                 string
	customer, otherCustomer, dispatcher context.Context
	admin                               context.Context
}

const upCustomer = "0195f2a0-0000-7000-8000-00000000c001"

func newUpFixture(t *testing.T, opts dispatch.Options) *upFixture {
	t.Helper()
	store := sqlite.New(databasetest.MigratedSQLite(t, "dispatch", sqlite.Migrate))
	dir := filepath.Join(t.TempDir(), blob.DefaultDir)
	files, err := blob.NewFiles(dir)
	if err != nil {
		t.Fatalf("NewFiles: %v", err)
	}
	f := &upFixture{
		tasks:   upTasks{Store: store, t: t},
		uploads: store.Uploads(),
		blobs:   files,
		blobDir: dir,
		clock:   dispatchtest.NewClock(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)),
		metrics: &upMetrics{n: map[string]int{}},
	}
	couriers := dispatchtest.NewCouriers(f.clock.Now)
	for _, c := range []struct{ user, id string }{{"u-holder", "c-holder"}, {"u-offered", "c-offered"}, {"u-stranger", "c-stranger"}} {
		couriers.Add(c.user, dispatch.CourierInfo{ID: c.id}, nil)
	}
	f.holder, f.offered, f.stranger = upCourier("u-holder"), upCourier("u-offered"), upCourier("u-stranger")
	f.holderID, f.offeredID = "c-holder", "c-offered"
	f.customer = upCustomerCtx(upCustomer)
	f.otherCustomer = upCustomerCtx("0195f2a0-0000-7000-8000-00000000c002")
	f.dispatcher = upUser("dispatcher-1", auth.RoleDispatcher)
	f.admin = upUser("admin-1", auth.RoleAdmin)
	opts.Now = f.clock.Now
	opts.Logger = slog.New(slog.DiscardHandler)
	f.svc = dispatch.NewService(dispatch.Deps{Store: f.tasks, Uploads: f.uploads, Blobs: f.blobs, Couriers: couriers, Metrics: f.metrics}, opts)
	f.task = f.newTask()
	return f
}

// newTask stores a task ASSIGNED to the holder, after an offer to the offered courier that expired.
func (f *upFixture) newTask() dispatch.Task {
	now := f.clock.Now()
	t := dispatch.Task{
		ID:         newUUID(),
		CustomerID: upCustomer,
		State:      dispatch.StateAssigned,
		CourierID:  f.holderID,
		Offers: []dispatch.Offer{
			{ID: newUUID(), CourierID: f.offeredID, State: dispatch.OfferExpired},
			{ID: newUUID(), CourierID: f.holderID, State: dispatch.OfferAccepted},
		},
		CreateTime: now,
		UpdateTime: now,
		Version:    3,
	}
	f.tasks.put(t)
	return t
}

func newUUID() string { return uuid.Must(uuid.NewV7()).String() }

func upContext(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// pngFile returns n bytes that sniff as a PNG.
func pngFile(n int) []byte {
	b := bytes.Repeat([]byte{0x5a}, n)
	copy(b, "\x89PNG\r\n\x1a\n")
	return b
}

// jpegFile returns n bytes that sniff as a JPEG.
func jpegFile(n int) []byte {
	b := bytes.Repeat([]byte{0x11}, n)
	copy(b, "\xff\xd8\xff")
	return b
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func (f *upFixture) startReq(taskID, uploadID string, file []byte) dispatch.UploadStartReq {
	return dispatch.UploadStartReq{
		TaskID:      taskID,
		UploadID:    uploadID,
		Kind:        dispatch.ProofPhoto,
		ContentType: "image/png",
		SizeBytes:   int64(len(file)),
		SHA256:      sum(file),
	}
}

// start starts an upload as the holder.
func (f *upFixture) start(t *testing.T, uploadID string, file []byte) (*dispatch.UploadWriter, dispatch.Upload) {
	t.Helper()
	w, u, err := f.svc.StartUpload(upContext(t, f.holder), f.startReq(f.task.ID, uploadID, file))
	if err != nil {
		t.Fatalf("StartUpload: %v", err)
	}
	t.Cleanup(func() { w.Close(context.Background()) })
	return w, u
}

// upload sends file in chunks of chunk bytes from the writer's committed offset and finishes it.
func upload(t *testing.T, w *dispatch.UploadWriter, file []byte, chunk int) dispatch.Upload {
	t.Helper()
	ctx := upContext(t, context.Background())
	for off := int(w.Upload().CommittedOffset); off < len(file); off += chunk {
		end := min(off+chunk, len(file))
		u, err := w.Write(ctx, int64(off), file[off:end])
		if err != nil {
			t.Fatalf("Write at %d: %v", off, err)
		}
		if u.CommittedOffset != int64(end) {
			t.Fatalf("committed offset %d after a write up to %d", u.CommittedOffset, end)
		}
	}
	u, err := w.Finish(ctx)
	if err != nil {
		t.Fatalf("Finish: %v", err)
	}
	return u
}

// commit uploads file as the holder and returns the COMMITTED upload.
func (f *upFixture) commit(t *testing.T, file []byte) dispatch.Upload {
	t.Helper()
	w, _ := f.start(t, "", file)
	u := upload(t, w, file, 1000)
	if u.State != dispatch.UploadCommitted {
		t.Fatalf("state %s after Finish, want committed", u.State)
	}
	return u
}

func (f *upFixture) content(t *testing.T, ctx context.Context, taskID, uploadID string) (string, []byte, error) {
	t.Helper()
	ct, n, rc, err := f.svc.ProofContent(upContext(t, ctx), taskID, uploadID)
	if err != nil {
		return "", nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read proof content: %v", err)
	}
	if int64(len(b)) != n {
		t.Fatalf("proof content: %d bytes, size said %d", len(b), n)
	}
	return ct, b, nil
}

func TestUploadCommit(t *testing.T) {
	f := newUpFixture(t, dispatch.Options{})
	file := pngFile(2500)
	loc := &geo.LatLng{Lat: 52.5, Lng: 13.4}
	req := f.startReq(f.task.ID, "", file)
	req.Kind, req.SignerName, req.CaptureLocation = dispatch.ProofSignature, "Grace Hopper", loc
	req.CaptureTime = f.clock.Now().Add(-time.Minute)
	w, started, err := f.svc.StartUpload(upContext(t, f.holder), req)
	if err != nil {
		t.Fatalf("StartUpload: %v", err)
	}
	defer w.Close(context.Background())
	now := f.clock.Now()
	want := dispatch.Upload{
		ID: started.ID, TaskID: f.task.ID, CourierID: f.holderID, Kind: dispatch.ProofSignature,
		ContentType: "image/png", SizeBytes: 2500, SHA256: sum(file), State: dispatch.UploadInProgress,
		SignerName: "Grace Hopper", CaptureTime: req.CaptureTime, CaptureLocation: loc,
		CreateTime: now, UpdateTime: now, ExpireTime: now.Add(24 * time.Hour),
		Writer: started.Writer, WriterUntil: now.Add(dispatch.UploadWriterLease),
	}
	if diff := cmp.Diff(want, started); diff != "" || !validUUID(started.ID) || started.Writer == "" {
		t.Fatalf("StartUpload (-want +got):\n%s", diff)
	}
	f.clock.Advance(time.Second)
	u := upload(t, w, file, 1024)
	want.CommittedOffset, want.State, want.ExpireTime, want.Writer, want.WriterUntil = 2500, dispatch.UploadCommitted, time.Time{}, "", time.Time{}
	want.UpdateTime = now.Add(time.Second)
	if diff := cmp.Diff(want, u); diff != "" {
		t.Fatalf("Finish (-want +got):\n%s", diff)
	}
	got, err := f.svc.GetUpload(upContext(t, f.holder), u.ID)
	if err != nil || !cmp.Equal(want, got) {
		t.Fatalf("GetUpload = %v; diff %s", err, cmp.Diff(want, got))
	}
	ct, b, err := f.content(t, f.holder, f.task.ID, u.ID)
	if err != nil || ct != "image/png" || !bytes.Equal(b, file) {
		t.Fatalf("ProofContent = %q, %d bytes, %v; want image/png, the file", ct, len(b), err)
	}
	if f.metrics.count("in_progress") != 1 || f.metrics.count("committed") != 1 {
		t.Fatalf("metrics %v, want one in_progress and one committed", f.metrics.n)
	}
}

func validUUID(s string) bool {
	u, err := uuid.Parse(s)
	return err == nil && u.String() == s
}

// TestUploadResume cuts an upload after its first chunk; a new stream with the same upload id continues
// at the committed offset.
func TestUploadResume(t *testing.T) {
	f := newUpFixture(t, dispatch.Options{})
	file := jpegFile(3000)
	id := newUUID()
	req := f.startReq(f.task.ID, id, file)
	req.ContentType = "image/jpeg"
	w, _, err := f.svc.StartUpload(upContext(t, f.holder), req)
	if err != nil {
		t.Fatalf("StartUpload: %v", err)
	}
	if _, err := w.Write(upContext(t, context.Background()), 0, file[:1200]); err != nil {
		t.Fatalf("Write: %v", err)
	}
	// The stream drops: the handler closes the writer with the stream's (done) context.
	dead, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.Close(dead); err != nil {
		t.Fatalf("Close: %v", err)
	}
	_, err = w.Write(upContext(t, context.Background()), 1200, file[1200:])
	apperrtest.WantCode(t, "Write after Close", err, apperr.FailedPrecondition)

	got, err := f.svc.GetUpload(upContext(t, f.holder), id)
	if err != nil || got.CommittedOffset != 1200 || got.State != dispatch.UploadInProgress || got.Writer != "" {
		t.Fatalf("GetUpload = offset %d, state %s, writer %q, %v; want 1200, in_progress, none", got.CommittedOffset, got.State, got.Writer, err)
	}
	f.clock.Advance(time.Hour)
	w2, resumed, err := f.svc.StartUpload(upContext(t, f.holder), req)
	if err != nil {
		t.Fatalf("StartUpload to resume: %v", err)
	}
	defer w2.Close(context.Background())
	if resumed.ID != id || resumed.CommittedOffset != 1200 || !resumed.ExpireTime.Equal(f.clock.Now().Add(24*time.Hour)) {
		t.Fatalf("resumed upload %s at %d expiring %v; want %s at 1200 expiring in 24 h", resumed.ID, resumed.CommittedOffset, resumed.ExpireTime, id)
	}
	_, err = w2.Write(upContext(t, context.Background()), 0, file[:100])
	apperrtest.WantCode(t, "Write at 0 after resume", err, apperr.FailedPrecondition)
	_, err = w2.Finish(upContext(t, context.Background()))
	apperrtest.WantCode(t, "Finish before every byte", err, apperr.FailedPrecondition)
	_, err = w2.Write(upContext(t, context.Background()), 1200, make([]byte, 1801))
	apperrtest.WantCode(t, "Write past the size", err, apperr.Invalid)
	u := upload(t, w2, file, 700)
	if u.State != dispatch.UploadCommitted || u.CommittedOffset != 3000 {
		t.Fatalf("upload %s at %d, want committed at 3000", u.State, u.CommittedOffset)
	}
	_, b, err := f.content(t, f.dispatcher, f.task.ID, id)
	if err != nil || !bytes.Equal(b, file) {
		t.Fatalf("ProofContent: %d bytes, %v; want the file", len(b), err)
	}

	// A committed upload resumed (its last answer was lost) is answered as it is, and takes nothing more;
	// a resume must describe the same file.
	w4, again, err := f.svc.StartUpload(upContext(t, f.holder), req)
	if err != nil || again.State != dispatch.UploadCommitted || again.CommittedOffset != 3000 || again.Writer != "" || !again.UpdateTime.Equal(u.UpdateTime) {
		t.Fatalf("resume a committed upload = %s at %d, writer %q, updated %v, %v; want it unchanged", again.State, again.CommittedOffset, again.Writer, again.UpdateTime, err)
	}
	_, err = w4.Write(upContext(t, context.Background()), 3000, file[:1])
	apperrtest.WantCode(t, "Write to a committed upload", err, apperr.FailedPrecondition)
	if fin, err := w4.Finish(upContext(t, context.Background())); err != nil || fin.State != dispatch.UploadCommitted {
		t.Fatalf("Finish of a committed upload = %s, %v; want it committed", fin.State, err)
	}
	if err := w4.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	other := newUUID()
	w3, _ := f.start(t, other, pngFile(10))
	w3.Close(context.Background())
	changed := f.startReq(f.task.ID, other, pngFile(11))
	_, _, err = f.svc.StartUpload(upContext(t, f.holder), changed)
	apperrtest.WantCode(t, "resume with another size", err, apperr.FailedPrecondition)
}

// TestUploadByUpperCaseIDs: a UUID in upper case (Swift's UUID().uuidString, for one) names the same
// task and upload as in lower case, which the server keeps and answers: an app may start an upload under
// an id it chose that way, resume it, read it and download its bytes.
func TestUploadByUpperCaseIDs(t *testing.T) {
	f := newUpFixture(t, dispatch.Options{})
	file := pngFile(3000)
	id := newUUID()
	req := f.startReq(strings.ToUpper(f.task.ID), strings.ToUpper(id), file)
	w, started, err := f.svc.StartUpload(upContext(t, f.holder), req)
	if err != nil {
		t.Fatalf("StartUpload with upper-case ids: %v", err)
	}
	if started.ID != id || started.TaskID != f.task.ID {
		t.Fatalf("started upload %s of task %s, want %s of %s", started.ID, started.TaskID, id, f.task.ID)
	}
	if _, err := w.Write(upContext(t, context.Background()), 0, file[:1000]); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	got, err := f.svc.GetUpload(upContext(t, f.holder), strings.ToUpper(id))
	if err != nil || got.ID != id || got.CommittedOffset != 1000 {
		t.Fatalf("GetUpload(upper case) = %s at %d, %v; want %s at 1000", got.ID, got.CommittedOffset, err, id)
	}
	w2, resumed, err := f.svc.StartUpload(upContext(t, f.holder), req)
	if err != nil || resumed.ID != id || resumed.CommittedOffset != 1000 {
		t.Fatalf("StartUpload to resume by upper-case id = %s at %d, %v; want %s at 1000", resumed.ID, resumed.CommittedOffset, err, id)
	}
	defer w2.Close(context.Background())
	if u := upload(t, w2, file, 1000); u.State != dispatch.UploadCommitted {
		t.Fatalf("upload %s, want committed", u.State)
	}
	if _, b, err := f.content(t, f.dispatcher, strings.ToUpper(f.task.ID), strings.ToUpper(id)); err != nil || !bytes.Equal(b, file) {
		t.Fatalf("ProofContent(upper case): %d bytes, %v; want the file", len(b), err)
	}
}

// TestUploadOnAFullDisk: a chunk the disk has no room for (the upload's file is /dev/full, where every
// write fails with ENOSPC) is Unavailable "the server's storage is full; try again later", not Internal:
// nothing is committed, the upload stays IN_PROGRESS at its offset, and once space is freed the same
// chunk, sent again, is stored and the upload commits with the whole file.
func TestUploadOnAFullDisk(t *testing.T) {
	f := newUpFixture(t, dispatch.Options{})
	file := pngFile(3000)
	id := newUUID()
	w, _ := f.start(t, id, file)
	if err := os.Symlink("/dev/full", filepath.Join(f.blobDir, id)); err != nil {
		t.Fatal(err)
	}
	_, err := w.Write(upContext(t, context.Background()), 0, file[:1000])
	apperrtest.WantCode(t, "Write on a full disk", err, apperr.Unavailable)
	if got, want := apperr.MessageOf(err), "the server's storage is full; try again later"; got != want {
		t.Errorf("Write on a full disk: message %q, want %q", got, want)
	}
	got, err := f.svc.GetUpload(upContext(t, f.holder), id)
	if err != nil || got.State != dispatch.UploadInProgress || got.CommittedOffset != 0 {
		t.Fatalf("GetUpload after the refused chunk = %s at %d, %v; want in_progress at 0", got.State, got.CommittedOffset, err)
	}

	if err := os.Remove(filepath.Join(f.blobDir, id)); err != nil { // space freed
		t.Fatal(err)
	}
	if u := upload(t, w, file, 1000); u.State != dispatch.UploadCommitted || u.CommittedOffset != 3000 {
		t.Fatalf("upload %s at %d after space was freed, want committed at 3000", u.State, u.CommittedOffset)
	}
	if _, b, err := f.content(t, f.dispatcher, f.task.ID, id); err != nil || !bytes.Equal(b, file) {
		t.Fatalf("ProofContent: %d bytes, %v; want the file", len(b), err)
	}
}

// TestUploadRejected checks that bytes not matching the declared SHA-256 or content type make the upload
// REJECTED and are deleted.
func TestUploadRejected(t *testing.T) {
	for _, tc := range []struct {
		name     string
		declared []byte // what the start describes
		sent     []byte
		ct       string
	}{
		{"checksum", pngFile(100), append(pngFile(99), 0x00), "image/png"},
		{"content type", jpegFile(100), jpegFile(100), "image/png"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newUpFixture(t, dispatch.Options{})
			req := f.startReq(f.task.ID, "", tc.declared)
			req.ContentType = tc.ct
			w, started, err := f.svc.StartUpload(upContext(t, f.holder), req)
			if err != nil {
				t.Fatalf("StartUpload: %v", err)
			}
			defer w.Close(context.Background())
			if _, err := w.Write(upContext(t, context.Background()), 0, tc.sent); err != nil {
				t.Fatalf("Write: %v", err)
			}
			u, err := w.Finish(upContext(t, context.Background()))
			apperrtest.WantCode(t, "Finish", err, apperr.Invalid)
			if u.State != dispatch.UploadRejected || !u.ExpireTime.IsZero() || u.Writer != "" {
				t.Fatalf("upload %s expiring %v writer %q, want rejected, no expiry, no writer", u.State, u.ExpireTime, u.Writer)
			}
			_, _, err = f.blobs.Open(upContext(t, context.Background()), started.ID)
			apperrtest.WantCode(t, "Open the rejected bytes", err, apperr.NotFound)
			got, err := f.svc.GetUpload(upContext(t, f.holder), started.ID)
			if err != nil || got.State != dispatch.UploadRejected {
				t.Fatalf("GetUpload = %s, %v; want rejected", got.State, err)
			}
			_, _, err = f.content(t, f.dispatcher, f.task.ID, started.ID)
			apperrtest.WantCode(t, "ProofContent of a rejected upload", err, apperr.NotFound)
			req.UploadID = started.ID
			_, _, err = f.svc.StartUpload(upContext(t, f.holder), req)
			apperrtest.WantCode(t, "resume a rejected upload", err, apperr.FailedPrecondition)
			if f.metrics.count("rejected") != 1 {
				t.Fatalf("metrics %v, want one rejected", f.metrics.n)
			}
		})
	}
}

// TestUploadWho checks who may upload: the holder only; others who may see the task are refused with
// FailedPrecondition, everyone else with NotFound.
func TestUploadWho(t *testing.T) {
	f := newUpFixture(t, dispatch.Options{})
	file := pngFile(10)
	for _, tc := range []struct {
		name   string
		ctx    context.Context
		taskID string
		want   apperr.Code
	}{
		{"holder", f.holder, f.task.ID, ""},
		{"courier offered it before", f.offered, f.task.ID, apperr.FailedPrecondition},
		{"stranger", f.stranger, f.task.ID, apperr.NotFound},
		{"missing task", f.holder, newUUID(), apperr.NotFound},
		{"courier without profile", upCourier("u-nobody"), f.task.ID, apperr.FailedPrecondition},
		{"customer", f.customer, f.task.ID, apperr.PermissionDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, _, err := f.svc.StartUpload(upContext(t, tc.ctx), f.startReq(tc.taskID, "", file))
			apperrtest.WantCode(t, "StartUpload", err, tc.want)
			if w != nil {
				w.Close(context.Background())
			}
		})
	}
	// Once the task is no longer held (delivered), nobody uploads.
	done := f.task.Clone()
	done.State = dispatch.StateDelivered
	f.tasks.put(done)
	_, _, err := f.svc.StartUpload(upContext(t, f.holder), f.startReq(f.task.ID, "", file))
	apperrtest.WantCode(t, "StartUpload on a delivered task", err, apperr.FailedPrecondition)
}

// TestUploadInvalid: a start the server's settings refuse is Invalid with a violation per field, and its
// message is their sentences (a client that shows only the message learns what is wrong).
func TestUploadInvalid(t *testing.T) {
	f := newUpFixture(t, dispatch.Options{MaxUploadBytes: 1000, AllowedContentTypes: []string{"image/png", "image/jpeg", "image/svg+xml"}})
	file := pngFile(10)
	for _, tc := range []struct {
		name    string
		mod     func(r *dispatch.UploadStartReq)
		fields  []string
		message string
	}{
		{"too big", func(r *dispatch.UploadStartReq) { r.SizeBytes = 1001 }, []string{"size_bytes"}, "size_bytes must be 1 to 1000 bytes"},
		{"empty", func(r *dispatch.UploadStartReq) { r.SizeBytes = 0 }, []string{"size_bytes"}, "size_bytes must be 1 to 1000 bytes"},
		{"type not allowed", func(r *dispatch.UploadStartReq) { r.ContentType = "image/webp" }, []string{"content_type"}, "a photo must be one of image/png, image/jpeg"},
		{"svg never", func(r *dispatch.UploadStartReq) { r.Kind, r.ContentType = dispatch.ProofSignature, "image/svg+xml" }, []string{"content_type"}, "a signature must be image/png"},
		{"jpeg signature", func(r *dispatch.UploadStartReq) { r.Kind, r.ContentType = dispatch.ProofSignature, "image/jpeg" }, []string{"content_type"}, "a signature must be image/png"},
		{"barcode", func(r *dispatch.UploadStartReq) { r.Kind = dispatch.ProofBarcode }, []string{"kind"}, "kind must be photo or signature"},
		{"sha256", func(r *dispatch.UploadStartReq) { r.SHA256 = "ABC" }, []string{"sha256"}, "sha256 must be 64 lowercase hexadecimal characters"},
		{"upload id", func(r *dispatch.UploadStartReq) { r.UploadID = "../../etc/passwd" }, []string{"upload_id"}, "upload_id must be a UUID"},
		{"task id", func(r *dispatch.UploadStartReq) { r.TaskID = "t1" }, []string{"task_id"}, "task_id must be a UUID"},
		{"signer of a photo", func(r *dispatch.UploadStartReq) { r.SignerName = "X" }, []string{"signer_name"}, "signer_name is only for a signature"},
		{"location", func(r *dispatch.UploadStartReq) { r.CaptureLocation = &geo.LatLng{Lat: 91} }, []string{"capture_location"}, "capture_location must be a valid latitude and longitude"},
		{"two at once", func(r *dispatch.UploadStartReq) { r.SizeBytes, r.SHA256 = 1001, "" }, []string{"size_bytes", "sha256"},
			"size_bytes must be 1 to 1000 bytes; sha256 must be 64 lowercase hexadecimal characters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := f.startReq(f.task.ID, "", file)
			tc.mod(&req)
			_, _, err := f.svc.StartUpload(upContext(t, f.holder), req)
			apperrtest.WantViolations(t, "StartUpload", err, tc.fields)
			if e := apperr.As(err); e == nil || e.Message != tc.message {
				t.Errorf("StartUpload message = %q, want %q", e.Message, tc.message)
			}
		})
	}
	// Without image/png in the server's types, a PNG signature is refused for that reason, not because it
	// "must be image/png".
	jpegOnly := newUpFixture(t, dispatch.Options{AllowedContentTypes: []string{"image/jpeg"}})
	req := jpegOnly.startReq(jpegOnly.task.ID, "", file)
	req.Kind = dispatch.ProofSignature
	_, _, err := jpegOnly.svc.StartUpload(upContext(t, jpegOnly.holder), req)
	apperrtest.WantViolations(t, "StartUpload of a PNG signature", err, []string{"content_type"})
	if e, want := apperr.As(err), "signatures are image/png, which this server does not accept"; e.Message != want {
		t.Errorf("StartUpload of a PNG signature: message = %q, want %q", e.Message, want)
	}
}

// TestUploadLimit checks the per-task limit: IN_PROGRESS and COMMITTED uploads count, attached or not
// (a courier may not store any number of committed files on a task); a REJECTED one does not.
func TestUploadLimit(t *testing.T) {
	f := newUpFixture(t, dispatch.Options{})
	file := pngFile(10)
	w, _ := f.start(t, "", file)
	bad := pngFile(len(file))
	bad[len(bad)-1]++ // not the declared SHA-256
	if _, err := w.Write(upContext(t, context.Background()), 0, bad); err != nil {
		t.Fatalf("Write: %v", err)
	}
	_, err := w.Finish(upContext(t, context.Background()))
	apperrtest.WantCode(t, "Finish with other bytes", err, apperr.Invalid) // REJECTED: does not count
	for i := range dispatch.MaxUploadsPerTask / 2 {
		f.commit(t, file) // committed, not attached: counts
		if w, _, err := f.svc.StartUpload(upContext(t, f.holder), f.startReq(f.task.ID, "", file)); err != nil {
			t.Fatalf("StartUpload %d: %v", 2*i+2, err)
		} else {
			w.Close(context.Background())
		}
	}
	_, _, err = f.svc.StartUpload(upContext(t, f.holder), f.startReq(f.task.ID, "", file))
	apperrtest.WantCode(t, "9th StartUpload", err, apperr.ResourceExhausted)
	// Another task has its own limit.
	other := f.newTask()
	if w, _, err := f.svc.StartUpload(upContext(t, f.holder), f.startReq(other.ID, "", file)); err != nil {
		t.Fatalf("StartUpload on another task: %v", err)
	} else {
		w.Close(context.Background())
	}
	// An attached upload counts: with one attached, 7 in progress fill the task.
	f2 := newUpFixture(t, dispatch.Options{})
	u := f2.commit(t, file)
	held := f2.task.Clone()
	held.Proofs = []dispatch.Proof{{UploadID: u.ID, Kind: dispatch.ProofPhoto, Stage: dispatch.StagePickup}, {Kind: dispatch.ProofBarcode, Value: "X"}}
	f2.tasks.put(held)
	for i := range dispatch.MaxUploadsPerTask - 1 {
		if w, _, err := f2.svc.StartUpload(upContext(t, f2.holder), f2.startReq(f2.task.ID, "", file)); err != nil {
			t.Fatalf("StartUpload %d: %v", i+1, err)
		} else {
			w.Close(context.Background())
		}
	}
	_, _, err = f2.svc.StartUpload(upContext(t, f2.holder), f2.startReq(f2.task.ID, "", file))
	apperrtest.WantCode(t, "8th StartUpload with one attached", err, apperr.ResourceExhausted)
}

// TestUploadLimitIsPerCourier: the uploads a courier left on a task (committed and never attached, or
// unfinished) before the task went to another courier, by a release or a reassignment, do not count
// toward the new holder's limit: nobody else can attach them, and counting them left the new holder
// unable to upload a required proof ("task … already holds 8 uploads") until they were discarded a day
// later. The new holder has a limit of their own.
func TestUploadLimitIsPerCourier(t *testing.T) {
	f := newUpFixture(t, dispatch.Options{})
	file := pngFile(10)
	for i := range dispatch.MaxUploadsPerTask {
		if i%2 == 0 {
			f.commit(t, file)
			continue
		}
		w, _ := f.start(t, "", file)
		w.Close(context.Background())
	}
	_, _, err := f.svc.StartUpload(upContext(t, f.holder), f.startReq(f.task.ID, "", file))
	apperrtest.WantCode(t, "the holder's 9th StartUpload", err, apperr.ResourceExhausted)

	moved := f.task.Clone()
	moved.CourierID = f.offeredID
	f.tasks.put(moved)
	for i := range dispatch.MaxUploadsPerTask {
		w, u, err := f.svc.StartUpload(upContext(t, f.offered), f.startReq(f.task.ID, "", file))
		if err != nil {
			t.Fatalf("the new holder's StartUpload %d: %v", i+1, err)
		}
		if got := upload(t, w, file, 10); got.State != dispatch.UploadCommitted || got.ID != u.ID {
			t.Fatalf("the new holder's upload %d: %s %s, want %s committed", i+1, got.ID, got.State, u.ID)
		}
	}
	_, _, err = f.svc.StartUpload(upContext(t, f.offered), f.startReq(f.task.ID, "", file))
	apperrtest.WantCode(t, "the new holder's 9th StartUpload", err, apperr.ResourceExhausted)
	if e, want := apperr.As(err), fmt.Sprintf("you already hold 8 uploads on task %s", f.task.ID); e.Message != want {
		t.Errorf("the new holder's 9th StartUpload: message %q, want %q", e.Message, want)
	}
}

// TestUploadOneWriter checks that a second stream on a live upload is Aborted, and takes over once the
// first stream's lease lapsed; the first stream is then Aborted.
func TestUploadOneWriter(t *testing.T) {
	f := newUpFixture(t, dispatch.Options{})
	file := pngFile(100)
	id := newUUID()
	w1, _ := f.start(t, id, file)
	_, _, err := f.svc.StartUpload(upContext(t, f.holder), f.startReq(f.task.ID, id, file))
	apperrtest.WantCode(t, "second StartUpload", err, apperr.Aborted)
	if _, err := w1.Write(upContext(t, context.Background()), 0, file[:50]); err != nil {
		t.Fatalf("Write: %v", err)
	}
	f.clock.Advance(dispatch.UploadWriterLease + time.Second)
	w2, u, err := f.svc.StartUpload(upContext(t, f.holder), f.startReq(f.task.ID, id, file))
	if err != nil {
		t.Fatalf("StartUpload after the lease lapsed: %v", err)
	}
	defer w2.Close(context.Background())
	if u.CommittedOffset != 50 {
		t.Fatalf("committed offset %d, want 50", u.CommittedOffset)
	}
	_, err = w1.Write(upContext(t, context.Background()), 50, file[50:])
	apperrtest.WantCode(t, "Write of the replaced stream", err, apperr.Aborted)
	// The replaced stream's Close leaves the new writer alone.
	if err := w1.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if u := upload(t, w2, file, 50); u.State != dispatch.UploadCommitted {
		t.Fatalf("state %s, want committed", u.State)
	}
}

// TestUploadConcurrentStart starts the same client-chosen upload id from many streams at once: exactly
// one gets it.
func TestUploadConcurrentStart(t *testing.T) {
	f := newUpFixture(t, dispatch.Options{})
	file := pngFile(100)
	id := newUUID()
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			w, _, err := f.svc.StartUpload(upContext(t, f.holder), f.startReq(f.task.ID, id, file))
			errs[i] = err
			if w != nil {
				t.Cleanup(func() { w.Close(context.Background()) })
			}
		})
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch apperr.CodeOf(err) {
		case "":
			ok++
		case apperr.Aborted:
		default:
			t.Errorf("StartUpload: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d streams got the upload, want 1", ok)
	}
}

func TestGetUploadVisibility(t *testing.T) {
	f := newUpFixture(t, dispatch.Options{})
	u := f.commit(t, pngFile(10))
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want apperr.Code
	}{
		{"uploader", f.holder, ""},
		{"dispatcher", f.dispatcher, ""},
		{"admin", f.admin, ""},
		{"other courier", f.offered, apperr.NotFound},
		{"customer", f.customer, apperr.NotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := f.svc.GetUpload(upContext(t, tc.ctx), u.ID)
			apperrtest.WantCode(t, "GetUpload", err, tc.want)
			if err == nil && !cmp.Equal(u, got) {
				t.Fatalf("GetUpload: %s", cmp.Diff(u, got))
			}
		})
	}
	_, err := f.svc.GetUpload(upContext(t, f.dispatcher), newUUID())
	apperrtest.WantCode(t, "GetUpload of nothing", err, apperr.NotFound)
	_, err = f.svc.GetUpload(upContext(t, f.dispatcher), "nope")
	apperrtest.WantCode(t, "GetUpload of a bad id", err, apperr.NotFound)
}

func TestProofContentVisibility(t *testing.T) {
	f := newUpFixture(t, dispatch.Options{})
	file := pngFile(10)
	u := f.commit(t, file)
	w, inProgress := f.start(t, "", file)
	w.Close(context.Background())
	for _, tc := range []struct {
		name           string
		ctx            context.Context
		taskID, upload string
		want           apperr.Code
	}{
		{"uploader", f.holder, f.task.ID, u.ID, ""},
		{"dispatcher", f.dispatcher, f.task.ID, u.ID, ""},
		{"admin", f.admin, f.task.ID, u.ID, ""},
		{"customer before attached", f.customer, f.task.ID, u.ID, apperr.NotFound},
		{"other customer", f.otherCustomer, f.task.ID, u.ID, apperr.NotFound},
		{"other courier", f.offered, f.task.ID, u.ID, apperr.NotFound},
		{"wrong task", f.dispatcher, f.newTask().ID, u.ID, apperr.NotFound},
		{"missing task", f.dispatcher, newUUID(), u.ID, apperr.NotFound},
		{"in progress", f.dispatcher, f.task.ID, inProgress.ID, apperr.NotFound},
		{"missing upload", f.dispatcher, f.task.ID, newUUID(), apperr.NotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ct, b, err := f.content(t, tc.ctx, tc.taskID, tc.upload)
			apperrtest.WantCode(t, "ProofContent", err, tc.want)
			if err == nil && (ct != "image/png" || !bytes.Equal(b, file)) {
				t.Fatalf("ProofContent = %q, %d bytes; want image/png, the file", ct, len(b))
			}
		})
	}
	attached := f.task.Clone()
	attached.Proofs = []dispatch.Proof{{UploadID: u.ID, Kind: dispatch.ProofPhoto, Stage: dispatch.StageDropoff}}
	f.tasks.put(attached)
	if _, b, err := f.content(t, f.customer, f.task.ID, u.ID); err != nil || !bytes.Equal(b, file) {
		t.Fatalf("ProofContent as the customer once attached: %d bytes, %v", len(b), err)
	}
	_, _, err := f.content(t, f.otherCustomer, f.task.ID, u.ID)
	apperrtest.WantCode(t, "ProofContent as another customer", err, apperr.NotFound)
}

func TestProofsFor(t *testing.T) {
	f := newUpFixture(t, dispatch.Options{})
	file := pngFile(10)
	u := f.commit(t, file)
	w, inProgress := f.start(t, "", file)
	w.Close(context.Background())
	ctx := upContext(t, context.Background())

	f.clock.Advance(time.Minute)
	proofs, ce := f.svc.ProofsFor(ctx, f.task, f.holderID, dispatch.StageDropoff, []string{u.ID, u.ID})
	if ce != nil {
		t.Fatalf("ProofsFor: %+v", ce)
	}
	want := []dispatch.Proof{{
		UploadID: u.ID, Kind: dispatch.ProofPhoto, Stage: dispatch.StageDropoff, ContentType: "image/png",
		SizeBytes: 10, SHA256: sum(file), CreateTime: f.clock.Now(),
	}}
	if diff := cmp.Diff(want, proofs); diff != "" {
		t.Fatalf("ProofsFor (-want +got):\n%s", diff)
	}
	got, _ := f.uploads.GetUpload(ctx, u.ID)
	if !got.AttachTime.Equal(f.clock.Now()) {
		t.Fatalf("attach time %v, want %v", got.AttachTime, f.clock.Now())
	}
	other := f.newTask()
	for _, tc := range []struct {
		name    string
		task    dispatch.Task
		courier string
		ids     []string
	}{
		{"in progress", f.task, f.holderID, []string{u.ID, inProgress.ID}},
		{"missing", f.task, f.holderID, []string{newUUID()}},
		{"bad id", f.task, f.holderID, []string{"x"}},
		{"other task", other, f.holderID, []string{u.ID}},
		{"other courier", f.task, f.offeredID, []string{u.ID}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ce := f.svc.ProofsFor(ctx, tc.task, tc.courier, dispatch.StagePickup, tc.ids)
			if ce == nil || ce.Code != apperr.FailedPrecondition || ce.Reason != dispatch.ReasonUploadNotCommitted {
				t.Fatalf("ProofsFor = %+v, want FailedPrecondition UPLOAD_NOT_COMMITTED", ce)
			}
		})
	}
}

// TestSweepUploads checks expiry: IN_PROGRESS uploads idle for 24 h and COMMITTED ones nobody attached
// within 24 h become EXPIRED (NotFound to GetUpload) and lose their bytes; attached ones stay.
func TestSweepUploads(t *testing.T) {
	f := newUpFixture(t, dispatch.Options{})
	ctx := upContext(t, context.Background())
	file := pngFile(10)
	attached := f.commit(t, file)
	if _, ce := f.svc.ProofsFor(ctx, f.task, f.holderID, dispatch.StageDropoff, []string{attached.ID}); ce != nil {
		t.Fatalf("ProofsFor: %+v", ce)
	}
	unattached := f.commit(t, file)
	w, idle := f.start(t, "", file)
	if _, err := w.Write(ctx, 0, file[:4]); err != nil {
		t.Fatalf("Write: %v", err)
	}
	w.Close(ctx)

	f.clock.Advance(23 * time.Hour)
	w2, active := f.start(t, "", file)
	if _, err := w2.Write(ctx, 0, file[:4]); err != nil {
		t.Fatalf("Write: %v", err)
	}
	w2.Close(ctx)
	if err := f.svc.SweepUploads(ctx); err != nil {
		t.Fatalf("SweepUploads: %v", err)
	}
	for _, id := range []string{attached.ID, unattached.ID, idle.ID, active.ID} {
		if _, err := f.svc.GetUpload(upContext(t, f.holder), id); err != nil {
			t.Fatalf("GetUpload(%s) after 23 h: %v", id, err)
		}
	}

	f.clock.Advance(time.Hour)
	if err := f.svc.SweepUploads(ctx); err != nil {
		t.Fatalf("SweepUploads: %v", err)
	}
	for _, tc := range []struct {
		name string
		id   string
		want apperr.Code
	}{
		{"attached", attached.ID, ""},
		{"unattached", unattached.ID, apperr.NotFound},
		{"idle", idle.ID, apperr.NotFound},
		{"active", active.ID, ""},
	} {
		_, err := f.svc.GetUpload(upContext(t, f.dispatcher), tc.id)
		apperrtest.WantCode(t, "GetUpload of "+tc.name, err, tc.want)
		_, _, err = f.blobs.Open(ctx, tc.id)
		apperrtest.WantCode(t, "Open bytes of "+tc.name, err, tc.want)
	}
	if f.metrics.count("expired") != 2 {
		t.Fatalf("metrics %v, want two expired", f.metrics.n)
	}
	// An expired upload cannot be resumed.
	_, _, err := f.svc.StartUpload(upContext(t, f.holder), f.startReq(f.task.ID, idle.ID, file))
	apperrtest.WantCode(t, "resume an expired upload", err, apperr.FailedPrecondition)
	// Its record goes after a week.
	f.clock.Advance(dispatch.UploadPurgeAfter + time.Hour)
	if err := f.svc.SweepUploads(ctx); err != nil {
		t.Fatalf("SweepUploads: %v", err)
	}
	_, err = f.uploads.GetUpload(ctx, idle.ID)
	apperrtest.WantCode(t, "record of an expired upload after a week", err, apperr.NotFound)
}

// TestUploadsNotConfigured checks a Service built without an upload store: the proof calls are
// Unavailable, commands citing uploads are refused, and the sweep has nothing to do.
func TestUploadsNotConfigured(t *testing.T) {
	svc := dispatch.NewService(dispatch.Deps{Store: newUpFixture(t, dispatch.Options{}).tasks, Couriers: dispatchtest.NewCouriers(nil)}, dispatch.Options{Logger: slog.New(slog.DiscardHandler)})
	ctx := upContext(t, upCourier("u-1"))
	_, _, err := svc.StartUpload(ctx, dispatch.UploadStartReq{TaskID: newUUID(), Kind: dispatch.ProofPhoto, ContentType: "image/png", SizeBytes: 1, SHA256: sum([]byte{1})})
	apperrtest.WantCode(t, "StartUpload", err, apperr.Unavailable)
	_, err = svc.GetUpload(ctx, newUUID())
	apperrtest.WantCode(t, "GetUpload", err, apperr.Unavailable)
	_, _, _, err = svc.ProofContent(ctx, newUUID(), newUUID())
	apperrtest.WantCode(t, "ProofContent", err, apperr.Unavailable)
	if _, ce := svc.ProofsFor(ctx, dispatch.Task{ID: newUUID()}, "c-1", dispatch.StageDropoff, []string{newUUID()}); ce == nil || ce.Reason != dispatch.ReasonUploadNotCommitted {
		t.Fatalf("ProofsFor = %+v, want UPLOAD_NOT_COMMITTED", ce)
	}
	if err := svc.SweepUploads(ctx); err != nil {
		t.Fatalf("SweepUploads: %v", err)
	}
}

// TestUploadReadsWhileCourierIsDown: when dispatch cannot find out which courier the caller is (the
// courier service is unreachable), GetUpload and ProofContent answer Unavailable, to be retried, not
// NotFound, which told the uploading courier's app that its upload was gone (GetUpload: "NOT_FOUND when the
// upload does not exist, was discarded, or the caller may not see it").
func TestUploadReadsWhileCourierIsDown(t *testing.T) {
	f := newUpFixture(t, dispatch.Options{})
	u := f.commit(t, pngFile(10))
	down := dispatchtest.NewCouriers(f.clock.Now)
	down.SetDown(true)
	// A service that has not yet looked the holder's courier up (the lookup is cached).
	svc := dispatch.NewService(dispatch.Deps{Store: f.tasks, Uploads: f.uploads, Blobs: f.blobs, Couriers: down}, dispatch.Options{Now: f.clock.Now, Logger: slog.New(slog.DiscardHandler)})
	_, err := svc.GetUpload(upContext(t, f.holder), u.ID)
	apperrtest.WantCode(t, "GetUpload as the uploader while courier is down", err, apperr.Unavailable)
	_, _, _, err = svc.ProofContent(upContext(t, f.holder), f.task.ID, u.ID)
	apperrtest.WantCode(t, "ProofContent as the uploader while courier is down", err, apperr.Unavailable)
	if _, err := svc.GetUpload(upContext(t, f.dispatcher), u.ID); err != nil {
		t.Errorf("GetUpload as a dispatcher while courier is down: %v", err)
	}
}

// TestProofContentStripped checks that the customer gets a photo without its metadata, and staff and the
// uploader the bytes as uploaded.
func TestProofContentStripped(t *testing.T) {
	f := newUpFixture(t, dispatch.Options{})
	app1 := "Exif\x00\x00secret GPS position"
	var file []byte
	file = append(file, 0xFF, 0xD8, 0xFF, 0xE1, 0, byte(len(app1)+2))
	file = append(file, app1...)
	file = append(file, 0xFF, 0xDA, 0, 2)
	file = append(file, bytes.Repeat([]byte{0x33}, 100)...)
	file = append(file, 0xFF, 0xD9)
	req := f.startReq(f.task.ID, "", file)
	req.ContentType = "image/jpeg"
	w, _, err := f.svc.StartUpload(upContext(t, f.holder), req)
	if err != nil {
		t.Fatalf("StartUpload: %v", err)
	}
	defer w.Close(context.Background())
	u := upload(t, w, file, 64)
	attached := f.task.Clone()
	attached.Proofs = []dispatch.Proof{{UploadID: u.ID, Kind: dispatch.ProofPhoto, Stage: dispatch.StageDropoff}}
	f.tasks.put(attached)

	ct, b, err := f.content(t, f.customer, f.task.ID, u.ID)
	if want := append([]byte{0xFF, 0xD8}, file[6+len(app1):]...); err != nil || ct != "image/jpeg" || !bytes.Equal(b, want) {
		t.Fatalf("ProofContent as the customer = %q, %q, %v; want the JPEG without its APP1", ct, b, err)
	}
	for _, ctx := range []context.Context{f.holder, f.dispatcher} {
		if _, b, err := f.content(t, ctx, f.task.ID, u.ID); err != nil || !bytes.Equal(b, file) {
			t.Fatalf("ProofContent as staff or uploader: %d bytes, %v; want the upload as is", len(b), err)
		}
	}
}

// TestUploadAcrossReplicasPostgres runs two services on one PostgreSQL database, with the bytes in
// PostgreSQL: an upload begun on one replica is resumed and finished on the other, and read back from the
// first.
func TestUploadAcrossReplicasPostgres(t *testing.T) {
	pool := databasetest.Postgres(t, postgres.Schema)
	ctx := upContext(t, context.Background())
	if err := database.MigratePostgres(ctx, pool, postgres.Migrations()); err != nil {
		t.Fatalf("MigratePostgres: %v", err)
	}
	f := newUpFixture(t, dispatch.Options{}) // for its task, couriers and principals
	replica := func() *dispatch.Service {
		db := database.SQLDB(pool)
		t.Cleanup(func() { db.Close() })
		couriers := dispatchtest.NewCouriers(f.clock.Now)
		couriers.Add("u-holder", dispatch.CourierInfo{ID: f.holderID}, nil)
		return dispatch.NewService(dispatch.Deps{
			Store: f.tasks, Uploads: sqlstore.NewUploads(db, database.Postgres), Blobs: blob.NewPostgres(db), Couriers: couriers,
		}, dispatch.Options{Now: f.clock.Now, Logger: slog.New(slog.DiscardHandler)})
	}
	a, b := replica(), replica()
	file := pngFile(3000)
	req := f.startReq(f.task.ID, newUUID(), file)

	wa, _, err := a.StartUpload(upContext(t, f.holder), req)
	if err != nil {
		t.Fatalf("StartUpload on a: %v", err)
	}
	if _, err := wa.Write(ctx, 0, file[:1000]); err != nil {
		t.Fatalf("Write on a: %v", err)
	}
	// Replica a dies without releasing the writer: b takes over once the lease lapsed.
	_, _, err = b.StartUpload(upContext(t, f.holder), req)
	apperrtest.WantCode(t, "StartUpload on b while a writes", err, apperr.Aborted)
	f.clock.Advance(dispatch.UploadWriterLease)
	wb, u, err := b.StartUpload(upContext(t, f.holder), req)
	if err != nil {
		t.Fatalf("StartUpload on b: %v", err)
	}
	defer wb.Close(context.Background())
	if u.CommittedOffset != 1000 {
		t.Fatalf("resumed on b at %d, want 1000", u.CommittedOffset)
	}
	if u := upload(t, wb, file, 900); u.State != dispatch.UploadCommitted {
		t.Fatalf("state %s on b, want committed", u.State)
	}
	ct, n, rc, err := a.ProofContent(upContext(t, f.holder), f.task.ID, req.UploadID)
	if err != nil {
		t.Fatalf("ProofContent on a: %v", err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil || ct != "image/png" || n != 3000 || !bytes.Equal(got, file) {
		t.Fatalf("ProofContent on a = %q, %d, %d bytes, %v; want image/png and the file", ct, n, len(got), err)
	}
}

// TestCommandsAttachUploads drives the courier's commands: a pickup citing an unfinished upload is
// refused, one citing committed uploads attaches them as proofs, and the customer can then read them.
func TestCommandsAttachUploads(t *testing.T) {
	f := newUpFixture(t, dispatch.Options{})
	f.tasks.SetJobs(func(context.Context, *sql.Tx, []dispatch.Job) error { return nil })
	file := pngFile(40)
	photo := f.commit(t, file)
	w, unfinished := f.start(t, "", file)
	w.Close(context.Background())

	exec := func(id string, cmd dispatch.Command) dispatch.CommandResult {
		return f.svc.Execute(upContext(t, f.holder), f.holderID, id, cmd)
	}
	r := exec("p1", dispatch.Command{Pickup: &dispatch.PickupCmd{TaskID: f.task.ID, UploadIDs: []string{photo.ID, unfinished.ID}}})
	if r.Err == nil || r.Err.Code != apperr.FailedPrecondition || r.Err.Reason != dispatch.ReasonUploadNotCommitted {
		t.Fatalf("pickup citing an unfinished upload = %+v, want UPLOAD_NOT_COMMITTED", r.Err)
	}
	r = exec("p2", dispatch.Command{Pickup: &dispatch.PickupCmd{TaskID: f.task.ID, UploadIDs: []string{photo.ID}}})
	if r.Err != nil {
		t.Fatalf("pickup with a committed photo: %+v", r.Err)
	}
	if r.Task == nil || r.Task.State != dispatch.StatePickedUp || len(r.Task.Proofs) != 1 || r.Task.Proofs[0].UploadID != photo.ID || r.Task.Proofs[0].Stage != dispatch.StagePickup {
		t.Fatalf("task after pickup = %+v, want PICKED_UP with the photo as a pickup proof", r.Task)
	}
	if _, b, err := f.content(t, f.customer, f.task.ID, photo.ID); err != nil || !bytes.Equal(b, file) {
		t.Fatalf("ProofContent as the customer after pickup: %d bytes, %v", len(b), err)
	}
	// Attached, the photo outlives the 24 h of unattached uploads.
	f.clock.Advance(25 * time.Hour)
	if err := f.svc.SweepUploads(upContext(t, context.Background())); err != nil {
		t.Fatalf("SweepUploads: %v", err)
	}
	if _, err := f.svc.GetUpload(upContext(t, f.holder), photo.ID); err != nil {
		t.Fatalf("GetUpload of the attached photo after a day: %v", err)
	}
}

// An upload attached to the task once cannot be attached again: citing the pickup's photo with the
// delivery is UPLOAD_NOT_COMMITTED ("already attached"), as the contract says, and the task stays
// PICKED_UP with one proof.
func TestAnUploadIsAttachedOnce(t *testing.T) {
	f := newUpFixture(t, dispatch.Options{})
	f.tasks.SetJobs(func(context.Context, *sql.Tx, []dispatch.Job) error { return nil })
	photo := f.commit(t, pngFile(40))
	exec := func(id string, cmd dispatch.Command) dispatch.CommandResult {
		return f.svc.Execute(upContext(t, f.holder), f.holderID, id, cmd)
	}
	if r := exec("p1", dispatch.Command{Pickup: &dispatch.PickupCmd{TaskID: f.task.ID, UploadIDs: []string{photo.ID}}}); r.Err != nil {
		t.Fatalf("pickup with a committed photo: %+v", r.Err)
	}
	r := exec("d1", dispatch.Command{Deliver: &dispatch.DeliverCmd{TaskID: f.task.ID, UploadIDs: []string{photo.ID}}})
	if r.Err == nil || r.Err.Code != apperr.FailedPrecondition || r.Err.Reason != dispatch.ReasonUploadNotCommitted ||
		r.Err.Metadata["upload_id"] != photo.ID {
		t.Fatalf("delivery citing the pickup's photo = %+v, want UPLOAD_NOT_COMMITTED naming it", r.Err)
	}
	got, err := f.svc.GetTask(upContext(t, f.customer), f.task.ID, dispatch.ViewFull)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != dispatch.StatePickedUp || len(got.Proofs) != 1 {
		t.Fatalf("task after the refused delivery: %s with %d proofs, want PICKED_UP with 1", got.State, len(got.Proofs))
	}
	if r := exec("d2", dispatch.Command{Deliver: &dispatch.DeliverCmd{TaskID: f.task.ID}}); r.Err != nil || r.Task == nil || len(r.Task.Proofs) != 1 {
		t.Fatalf("delivery without it = %+v, want DELIVERED with the pickup's proof", r)
	}
}
