package dispatch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"lastmile/internal/geo"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/freetext"
)

// MaxSignerName bounds UploadStartReq.SignerName, in characters.
const MaxSignerName = 200

// sha256RE matches a SHA-256 as the contract spells it.
var sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// setUploadDefaults fills the upload options NewService leaves at their zero value.
func setUploadDefaults(o *Options) {
	if o.MaxUploadBytes <= 0 || o.MaxUploadBytes > DefaultMaxUploadBytes {
		o.MaxUploadBytes = DefaultMaxUploadBytes
	}
	var allowed []string
	for _, ct := range o.AllowedContentTypes {
		if slices.Contains(DefaultAllowedContentTypes, ct) && !slices.Contains(allowed, ct) {
			allowed = append(allowed, ct)
		}
	}
	if len(allowed) == 0 {
		allowed = slices.Clone(DefaultAllowedContentTypes)
	}
	o.AllowedContentTypes = allowed
}

// UploadStartReq starts a proof upload, or resumes one.
type UploadStartReq struct {
	TaskID string
	// UploadID is empty for a server-chosen id; a UUID to resume that upload or to start one under it.
	UploadID    string
	Kind        ProofKind
	ContentType string
	SizeBytes   int64
	SHA256      string
	// SignerName is who signed (signatures only); optional.
	SignerName      string
	CaptureTime     time.Time
	CaptureLocation *geo.LatLng
}

// validate checks what the contract's rules check, and the configured limits. It writes the ids back in
// canonical form (lowercase), as every other call reads them: a UUID in upper case names the same task
// or upload.
func (s *Service) validateUploadStart(req *UploadStartReq) error {
	var v []apperr.FieldViolation
	add := func(field, format string, args ...any) {
		v = append(v, apperr.FieldViolation{Field: field, Description: fmt.Sprintf(format, args...)})
	}
	var ok bool
	if req.TaskID, ok = normalizeID(req.TaskID); !ok {
		add("task_id", "must be a UUID")
	}
	if req.UploadID != "" {
		if req.UploadID, ok = normalizeID(req.UploadID); !ok {
			add("upload_id", "must be a UUID")
		}
	}
	switch req.Kind {
	case ProofPhoto:
		if !slices.Contains(s.opts.AllowedContentTypes, req.ContentType) {
			add("content_type", "a photo must be one of %s", strings.Join(s.opts.AllowedContentTypes, ", "))
		}
	case ProofSignature:
		if req.ContentType != "image/png" {
			add("content_type", "a signature must be image/png")
		} else if !slices.Contains(s.opts.AllowedContentTypes, req.ContentType) {
			add("content_type", "signatures are image/png, which this server does not accept")
		}
	default:
		add("kind", "must be photo or signature")
	}
	if req.SizeBytes <= 0 || req.SizeBytes > s.opts.MaxUploadBytes {
		add("size_bytes", "must be 1 to %d bytes", s.opts.MaxUploadBytes)
	}
	if !sha256RE.MatchString(req.SHA256) {
		add("sha256", "must be 64 lowercase hexadecimal characters")
	}
	if req.SignerName != "" {
		if req.Kind != ProofSignature {
			add("signer_name", "is only for a signature")
		}
		if len([]rune(req.SignerName)) > MaxSignerName {
			add("signer_name", "must be at most %d characters without control characters", MaxSignerName)
		} else if p := freetext.Problem(req.SignerName, false); p != "" {
			add("signer_name", "%s", p)
		}
	}
	if req.CaptureLocation != nil && !req.CaptureLocation.Valid() {
		add("capture_location", "must be a valid latitude and longitude")
	}
	if len(v) > 0 {
		return apperr.InvalidRequest(v...)
	}
	return nil
}

// validUUID reports whether id is a UUID in canonical lowercase form, the only spelling stores and blob
// file names see.
func validUUID(id string) bool {
	u, err := uuid.Parse(id)
	return err == nil && u.String() == id
}

// errNoUploads answers the proof RPCs of a Service built without an upload store or blobs.
var errNoUploads = apperr.Errorf(apperr.Unavailable, "proof uploads are not configured on this server")

// uploadsConfigured reports whether the Service has both stores uploads need.
func (s *Service) uploadsConfigured() bool { return s.uploads != nil && s.blobs != nil }

// UploadWriter writes one upload: chunks at the committed offset, then Finish. It holds the upload's
// writer lease from StartUpload until Close (or until it lapses, UploadWriterLease after the last write).
// Its methods are safe for concurrent use but meant for one stream.
type UploadWriter struct {
	s      *Service
	writer string

	mu     sync.Mutex
	u      Upload
	closed bool
}

// StartUpload starts the upload req describes, or resumes the one req.UploadID names, for the calling
// courier, and takes its writer lease. The caller must hold the task (ASSIGNED or PICKED_UP). Resuming
// an upload that is already COMMITTED, as req describes it, returns it COMMITTED: the writer then takes
// no chunk, its Finish returns the upload as it is, and the stream has nothing more to do.
//
// Errors: Invalid for a malformed request; PermissionDenied when the caller is not a courier and
// FailedPrecondition when they have no courier profile (callerCourier); NotFound when the task does not
// exist or the caller may not see it; FailedPrecondition when the caller does not hold the task, or the
// resumed upload is REJECTED or EXPIRED, belongs to another task or courier, or differs from req in kind,
// content type, size or SHA-256; Aborted when another live stream writes the upload; ResourceExhausted
// when the caller already has MaxUploadsPerTask uploads on the task IN_PROGRESS or COMMITTED (attached,
// or not yet discarded).
func (s *Service) StartUpload(ctx context.Context, req UploadStartReq) (*UploadWriter, Upload, error) {
	if !s.uploadsConfigured() {
		return nil, Upload{}, errNoUploads
	}
	if err := s.validateUploadStart(&req); err != nil {
		return nil, Upload{}, err
	}
	courierID, err := s.callerCourier(ctx)
	if err != nil {
		return nil, Upload{}, err
	}
	t, err := s.store.GetTask(ctx, req.TaskID)
	if err != nil {
		return nil, Upload{}, notFoundOr(err, "get task "+req.TaskID)
	}
	if !canSee(auth.FromContext(ctx), t, courierID) {
		return nil, Upload{}, errTaskNotFound
	}
	if courierID == "" || !t.State.Held() || t.CourierID != courierID {
		return nil, Upload{}, apperr.Errorf(apperr.FailedPrecondition, "task %s is not held by the caller (state %s)", t.ID, t.State)
	}
	w := &UploadWriter{s: s, writer: newID()}
	if req.UploadID != "" {
		u, err := w.resume(ctx, req, courierID)
		if err == nil {
			w.u = u
			return w, u, nil
		}
		if apperr.CodeOf(err) != apperr.NotFound {
			return nil, Upload{}, err
		}
	}
	id := req.UploadID
	if id == "" {
		id = newID()
	}
	now := storedTime(s.now())
	u := Upload{
		ID:              id,
		TaskID:          t.ID,
		CourierID:       courierID,
		Kind:            req.Kind,
		ContentType:     req.ContentType,
		SizeBytes:       req.SizeBytes,
		SHA256:          req.SHA256,
		State:           UploadInProgress,
		SignerName:      req.SignerName,
		CaptureTime:     captureTime(req.CaptureTime, now),
		CaptureLocation: req.CaptureLocation,
		CreateTime:      now,
		UpdateTime:      now,
		ExpireTime:      now.Add(UploadRetention),
		Writer:          w.writer,
		WriterUntil:     now.Add(UploadWriterLease),
	}
	err = s.uploads.CreateUpload(ctx, u, func(counts UploadCounts) error {
		// Committed uploads count, attached or not: until the sweeper discards one nobody attached, its
		// bytes are kept, so not counting them would let a courier store any number of files on a task.
		// Only the caller's own count: another courier's uploads on the task (before a release or a
		// reassignment) can be attached by nobody else, and counting them would let a courier who held
		// the task leave the next one unable to upload the proof it needs for 24 hours.
		mine := counts[courierID]
		if mine[UploadInProgress]+mine[UploadCommitted] >= MaxUploadsPerTask {
			return apperr.Errorf(apperr.ResourceExhausted, "you already hold %d uploads on task %s", MaxUploadsPerTask, t.ID)
		}
		return nil
	})
	if apperr.CodeOf(err) == apperr.Conflict && req.UploadID != "" {
		// Another stream created it since we looked: resume it, which refuses a live writer.
		u, err = w.resume(ctx, req, courierID)
		if err != nil {
			return nil, Upload{}, err
		}
		w.u = u
		return w, u, nil
	}
	if apperr.CodeOf(err) == apperr.ResourceExhausted {
		return nil, Upload{}, err
	}
	if err != nil {
		return nil, Upload{}, fmt.Errorf("create upload %s: %w", id, err)
	}
	s.metrics.Upload(string(UploadInProgress))
	w.u = u
	return w, u, nil
}

// resume takes the writer lease of the existing upload req.UploadID after checking that req describes
// it. NotFound when there is no such upload.
//
// An upload that is already COMMITTED and that req describes is returned as it is, without a lease: the
// app lost the answer to its finish (or to the start of a resume) and resumes to learn where the upload
// stands, and the upload is ready to attach. Refusing it would have the app upload the file again, and
// the copies would count toward the task's MaxUploadsPerTask.
func (w *UploadWriter) resume(ctx context.Context, req UploadStartReq, courierID string) (Upload, error) {
	now := storedTime(w.s.now())
	var committed Upload
	u, err := w.s.uploads.UpdateUpload(ctx, req.UploadID, func(u Upload) (Upload, error) {
		if u.TaskID != req.TaskID || u.CourierID != courierID {
			return u, apperr.Errorf(apperr.FailedPrecondition, "upload id %s is taken by another upload", u.ID)
		}
		same := u.Kind == req.Kind && u.ContentType == req.ContentType && u.SizeBytes == req.SizeBytes && u.SHA256 == req.SHA256
		if u.State == UploadCommitted && same {
			committed = u
			return u, errNoChange
		}
		if u.State != UploadInProgress {
			return u, apperr.Errorf(apperr.FailedPrecondition, "upload %s is %s, not in progress: start a new upload", u.ID, u.State)
		}
		if !same {
			return u, apperr.Errorf(apperr.FailedPrecondition, "upload %s was started with another kind, content type, size or sha256", u.ID)
		}
		if u.Writer != "" && now.Before(u.WriterUntil) {
			return u, apperr.Errorf(apperr.Aborted, "upload %s is being written by another stream", u.ID)
		}
		u.Writer = w.writer
		u.WriterUntil = now.Add(UploadWriterLease)
		u.UpdateTime = now
		u.ExpireTime = now.Add(UploadRetention)
		return u, nil
	})
	if errors.Is(err, errNoChange) {
		return committed, nil
	}
	return u, err
}

// Upload returns the upload as the writer last saw it.
func (w *UploadWriter) Upload() Upload {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.u
}

// update changes the upload under its lock, provided this writer still holds it.
func (w *UploadWriter) update(ctx context.Context, fn func(u *Upload, now time.Time) error) (Upload, error) {
	now := storedTime(w.s.now())
	u, err := w.s.uploads.UpdateUpload(ctx, w.u.ID, func(u Upload) (Upload, error) {
		if u.Writer != w.writer {
			return u, apperr.Errorf(apperr.Aborted, "upload %s is now written by another stream", u.ID)
		}
		if u.State != UploadInProgress {
			return u, apperr.Errorf(apperr.FailedPrecondition, "upload %s is %s, not in progress", u.ID, u.State)
		}
		err := fn(&u, now)
		return u, err
	})
	if err != nil {
		return Upload{}, err
	}
	w.u = u
	return u, nil
}

// Write stores data at offset, which must be the committed offset (FailedPrecondition otherwise);
// offset+len(data) must not exceed the upload's size (Invalid). It returns once the bytes are durable
// and the new committed offset recorded. Aborted when another stream took the upload over.
func (w *UploadWriter) Write(ctx context.Context, offset int64, data []byte) (Upload, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return Upload{}, apperr.Errorf(apperr.FailedPrecondition, "upload %s: writer closed", w.u.ID)
	}
	if w.u.State != UploadInProgress {
		return Upload{}, apperr.Errorf(apperr.FailedPrecondition, "upload %s is %s, not in progress", w.u.ID, w.u.State)
	}
	if len(data) == 0 || len(data) > MaxChunkBytes {
		return Upload{}, apperr.Errorf(apperr.Invalid, "a chunk holds 1 to %d bytes, not %d", MaxChunkBytes, len(data))
	}
	if offset != w.u.CommittedOffset {
		return Upload{}, apperr.Errorf(apperr.FailedPrecondition, "chunk at offset %d, want the committed offset %d", offset, w.u.CommittedOffset)
	}
	end := offset + int64(len(data))
	if end > w.u.SizeBytes {
		return Upload{}, apperr.Errorf(apperr.Invalid, "chunk ends at %d, past the upload's size %d", end, w.u.SizeBytes)
	}
	if err := w.s.blobs.Append(ctx, w.u.ID, offset, data); err != nil {
		return Upload{}, fmt.Errorf("store bytes of upload %s at %d: %w", w.u.ID, offset, err)
	}
	return w.update(ctx, func(u *Upload, now time.Time) error {
		if u.CommittedOffset != offset {
			return apperr.Errorf(apperr.FailedPrecondition, "chunk at offset %d, want the committed offset %d", offset, u.CommittedOffset)
		}
		u.CommittedOffset = end
		u.UpdateTime = now
		u.ExpireTime = now.Add(UploadRetention)
		u.WriterUntil = now.Add(UploadWriterLease)
		return nil
	})
}

// Finish verifies the upload once every byte arrived: its size, its SHA-256 and that its first bytes
// are of the declared content type. It returns the COMMITTED upload, or, when a check fails, the
// REJECTED upload (its bytes deleted) with an Invalid error. FailedPrecondition before every byte
// arrived.
func (w *UploadWriter) Finish(ctx context.Context) (Upload, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return Upload{}, apperr.Errorf(apperr.FailedPrecondition, "upload %s: writer closed", w.u.ID)
	}
	if w.u.State == UploadCommitted { // resumed after it was committed (see resume)
		return w.u, nil
	}
	if w.u.CommittedOffset < w.u.SizeBytes {
		return Upload{}, apperr.Errorf(apperr.FailedPrecondition, "upload %s has %d of %d bytes", w.u.ID, w.u.CommittedOffset, w.u.SizeBytes)
	}
	problem, err := w.s.verifyBlob(ctx, w.u)
	if err != nil {
		return Upload{}, err
	}
	if problem != "" {
		u, err := w.update(ctx, func(u *Upload, now time.Time) error {
			u.State = UploadRejected
			u.UpdateTime = now
			u.ExpireTime = time.Time{}
			u.Writer, u.WriterUntil = "", time.Time{}
			return nil
		})
		if err != nil {
			return Upload{}, err
		}
		w.s.metrics.Upload(string(UploadRejected))
		if err := w.s.blobs.Delete(ctx, u.ID); err != nil {
			// The sweeper does not see REJECTED uploads: log it, the bytes are unreachable anyway.
			w.s.logger.Error("dispatch: delete rejected upload's bytes", "upload", u.ID, "err", err)
		}
		return u, apperr.Errorf(apperr.Invalid, "upload %s rejected: %s", u.ID, problem)
	}
	u, err := w.update(ctx, func(u *Upload, now time.Time) error {
		u.State = UploadCommitted
		u.UpdateTime = now
		u.ExpireTime = time.Time{}
		u.Writer, u.WriterUntil = "", time.Time{}
		return nil
	})
	if err != nil {
		return Upload{}, err
	}
	w.s.metrics.Upload(string(UploadCommitted))
	return u, nil
}

// sniffLen is how many leading bytes content sniffing looks at.
const sniffLen = 512

// verifyBlob reads u's stored bytes and returns why they do not match u ("" when they do).
func (s *Service) verifyBlob(ctx context.Context, u Upload) (string, error) {
	rc, n, err := s.blobs.Open(ctx, u.ID)
	if apperr.CodeOf(err) == apperr.NotFound {
		return "no bytes were stored", nil
	}
	if err != nil {
		return "", fmt.Errorf("open bytes of upload %s: %w", u.ID, err)
	}
	defer rc.Close()
	if n != u.SizeBytes {
		return fmt.Sprintf("%d bytes stored, %d declared", n, u.SizeBytes), nil
	}
	h := sha256.New()
	var head bytes.Buffer
	r := io.TeeReader(rc, h)
	if _, err := io.CopyN(&head, r, min(n, sniffLen)); errors.Is(err, io.EOF) {
		return fmt.Sprintf("%d bytes stored, %d declared", head.Len(), u.SizeBytes), nil
	} else if err != nil {
		return "", fmt.Errorf("read bytes of upload %s: %w", u.ID, err)
	}
	m, err := io.Copy(io.Discard, r)
	if err != nil {
		return "", fmt.Errorf("read bytes of upload %s: %w", u.ID, err)
	}
	if got := int64(head.Len()) + m; got != u.SizeBytes {
		return fmt.Sprintf("%d bytes stored, %d declared", got, u.SizeBytes), nil
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != u.SHA256 {
		return "the bytes do not match the declared sha256", nil
	}
	if got := http.DetectContentType(head.Bytes()); got != u.ContentType {
		return fmt.Sprintf("the bytes are not %s", u.ContentType), nil
	}
	return "", nil
}

// Close releases the writer lease, so that another stream may resume the upload at once. It uses ctx
// without its cancellation (a stream's context is usually done by then), for a bounded time.
func (w *UploadWriter) Close(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	if w.u.Writer != w.writer || w.u.State != UploadInProgress {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, err := w.s.uploads.UpdateUpload(ctx, w.u.ID, func(u Upload) (Upload, error) {
		if u.Writer != w.writer {
			return u, errNoChange
		}
		u.Writer, u.WriterUntil = "", time.Time{}
		return u, nil
	})
	if err != nil && !errors.Is(err, errNoChange) {
		return fmt.Errorf("release writer of upload %s: %w", w.u.ID, err)
	}
	return nil
}

// GetUpload returns the upload with id to the courier who started it, dispatchers and administrators.
// NotFound for anyone else, and for uploads that expired; Unavailable when a courier caller's courier
// cannot be looked up (courier unreachable), rather than a NotFound that would tell the app its upload is
// gone.
func (s *Service) GetUpload(ctx context.Context, id string) (Upload, error) {
	if !s.uploadsConfigured() {
		return Upload{}, errNoUploads
	}
	notFound := apperr.Errorf(apperr.NotFound, "upload %s not found", id)
	id, ok := normalizeID(id)
	if !ok {
		return Upload{}, notFound
	}
	p := auth.FromContext(ctx)
	u, err := s.uploads.GetUpload(ctx, id)
	if apperr.CodeOf(err) == apperr.NotFound {
		return Upload{}, notFound
	}
	if err != nil {
		return Upload{}, fmt.Errorf("get upload %s: %w", id, err)
	}
	if u.State == UploadExpired {
		return Upload{}, notFound
	}
	if staff(p) {
		return u, nil
	}
	courierID, err := s.callerCourierID(ctx)
	if err != nil {
		return Upload{}, err
	}
	if courierID == "" || courierID != u.CourierID {
		return Upload{}, notFound
	}
	return u, nil
}

// ProofContent returns the content type, size and bytes of the COMMITTED upload uploadID of task
// taskID. The courier who uploaded it, dispatchers and administrators may read it as stored; the task's
// customer only once it is attached to the task as a proof, and without the image's metadata (EXIF, XMP,
// comments: see stripMetadata), so its size and hash may differ from the upload's. NotFound otherwise, and when the task or the upload
// does not exist, the upload belongs to another task or is not COMMITTED; Unavailable when a courier
// caller's courier cannot be looked up. The caller closes the reader.
func (s *Service) ProofContent(ctx context.Context, taskID, uploadID string) (string, int64, io.ReadCloser, error) {
	if !s.uploadsConfigured() {
		return "", 0, nil, errNoUploads
	}
	notFound := apperr.Errorf(apperr.NotFound, "proof %s of task %s not found", uploadID, taskID)
	taskID, okTask := normalizeID(taskID)
	uploadID, okUpload := normalizeID(uploadID)
	if !okTask || !okUpload {
		return "", 0, nil, notFound
	}
	p := auth.FromContext(ctx)
	t, err := s.store.GetTask(ctx, taskID)
	if apperr.CodeOf(err) == apperr.NotFound {
		return "", 0, nil, notFound
	}
	if err != nil {
		return "", 0, nil, fmt.Errorf("get task %s: %w", taskID, err)
	}
	u, err := s.uploads.GetUpload(ctx, uploadID)
	if apperr.CodeOf(err) == apperr.NotFound {
		return "", 0, nil, notFound
	}
	if err != nil {
		return "", 0, nil, fmt.Errorf("get upload %s: %w", uploadID, err)
	}
	if u.TaskID != t.ID || u.State != UploadCommitted {
		return "", 0, nil, notFound
	}
	may, strip, err := s.mayReadProof(ctx, p, t, u)
	if err != nil {
		return "", 0, nil, err
	}
	if !may {
		return "", 0, nil, notFound
	}
	rc, n, err := s.blobs.Open(ctx, u.ID)
	if apperr.CodeOf(err) == apperr.NotFound {
		return "", 0, nil, notFound
	}
	if err != nil {
		return "", 0, nil, fmt.Errorf("open bytes of upload %s: %w", u.ID, err)
	}
	if !strip {
		return u.ContentType, n, rc, nil
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, n+1))
	if err != nil {
		return "", 0, nil, fmt.Errorf("read bytes of upload %s: %w", u.ID, err)
	}
	b = stripMetadata(u.ContentType, b)
	return u.ContentType, int64(len(b)), io.NopCloser(bytes.NewReader(b)), nil
}

// mayReadProof reports whether p may read the bytes of u, an upload of t, and whether they must be
// stripped of their metadata first (for the customer). The error is the courier lookup's, when a courier
// caller's courier cannot be found out (Unavailable).
func (s *Service) mayReadProof(ctx context.Context, p auth.Principal, t Task, u Upload) (may, strip bool, err error) {
	if staff(p) {
		return true, false, nil
	}
	if p.HasRole(auth.RoleCourier) {
		courierID, err := s.callerCourierID(ctx)
		if err != nil {
			return false, false, err
		}
		if courierID != "" && courierID == u.CourierID {
			return true, false, nil
		}
	}
	if p.Kind == auth.User && p.Subject != "" && strings.EqualFold(p.Subject, t.CustomerID) {
		return t.HasProof(u.ID), true, nil
	}
	return false, false, nil
}

// proofsFor returns the proofs of stage that the uploads uploadIDs make, for a command of courierID on
// t (pickup, delivery, failure). Every upload must be COMMITTED, of t and by courierID; otherwise a
// CommandError with reason UPLOAD_NOT_COMMITTED (or, when the store fails, the failure's code). The
// uploads are marked attached, so they are never discarded. Repeated ids count once.
func (s *Service) proofsFor(ctx context.Context, t Task, courierID string, stage Stage, uploadIDs []string) ([]Proof, *CommandError) {
	var out []Proof
	seen := map[string]bool{}
	for _, id := range uploadIDs {
		if seen[id] {
			continue
		}
		seen[id] = true
		refuse := func(why string) *CommandError {
			return &CommandError{
				Code:     apperr.FailedPrecondition,
				Reason:   ReasonUploadNotCommitted,
				Message:  fmt.Sprintf("upload %s %s", id, why),
				Metadata: map[string]string{"upload_id": id},
			}
		}
		if !validUUID(id) || !s.uploadsConfigured() {
			return nil, refuse("does not exist")
		}
		now := storedTime(s.now())
		u, err := s.uploads.UpdateUpload(ctx, id, func(u Upload) (Upload, error) {
			if u.TaskID != t.ID || u.CourierID != courierID {
				return u, apperr.Errorf(apperr.NotFound, "upload %s not found", id)
			}
			if u.State != UploadCommitted {
				return u, apperr.Errorf(apperr.FailedPrecondition, "upload %s is %s", id, u.State)
			}
			if !u.AttachTime.IsZero() {
				return u, errNoChange
			}
			u.AttachTime = now
			return u, nil
		})
		if errors.Is(err, errNoChange) {
			u, err = s.uploads.GetUpload(ctx, id)
		}
		switch apperr.CodeOf(err) {
		case "":
		case apperr.NotFound:
			return nil, refuse("does not exist")
		case apperr.FailedPrecondition:
			return nil, refuse("is not committed")
		default:
			return nil, s.errOf(err, "attach upload "+id)
		}
		if u.State != UploadCommitted {
			return nil, refuse("is not committed")
		}
		out = append(out, Proof{
			UploadID:        u.ID,
			Kind:            u.Kind,
			Stage:           stage,
			ContentType:     u.ContentType,
			SizeBytes:       u.SizeBytes,
			SHA256:          u.SHA256,
			SignerName:      u.SignerName,
			CaptureTime:     u.CaptureTime,
			CaptureLocation: u.CaptureLocation,
			CreateTime:      now,
		})
	}
	return out, nil
}

// sweepBatch bounds the uploads one sweep discards.
const sweepBatch = 100

// sweepUploads discards the uploads that expired: IN_PROGRESS ones past their ExpireTime, and COMMITTED
// ones nobody attached within UploadRetention. Each becomes EXPIRED (under its lock, so one attached or
// resumed meanwhile is left alone) and loses its bytes. It also purges the records of uploads discarded
// more than UploadPurgeAfter ago. Run calls it periodically. A Service without uploads has nothing to
// sweep.
func (s *Service) sweepUploads(ctx context.Context) error {
	if !s.uploadsConfigured() {
		return nil
	}
	now := storedTime(s.now())
	for {
		due, err := s.uploads.SweepableUploads(ctx, now, now.Add(-UploadRetention), sweepBatch)
		if err != nil {
			return fmt.Errorf("list expired uploads: %w", err)
		}
		changed := 0
		for _, d := range due {
			_, err := s.uploads.UpdateUpload(ctx, d.ID, func(u Upload) (Upload, error) {
				switch {
				case u.State == UploadInProgress && !u.ExpireTime.After(now):
				case u.State == UploadCommitted && u.AttachTime.IsZero() && !u.UpdateTime.After(now.Add(-UploadRetention)):
				default:
					return u, errNoChange
				}
				u.State = UploadExpired
				u.ExpireTime = time.Time{}
				u.Writer, u.WriterUntil = "", time.Time{}
				u.UpdateTime = now
				return u, nil
			})
			if errors.Is(err, errNoChange) || apperr.CodeOf(err) == apperr.NotFound {
				continue
			}
			if err != nil {
				return fmt.Errorf("expire upload %s: %w", d.ID, err)
			}
			changed++
			s.metrics.Upload(string(UploadExpired))
			if err := s.blobs.Delete(ctx, d.ID); err != nil {
				// The record says EXPIRED already; the bytes are unreachable, only their space is lost.
				s.logger.Error("dispatch: delete bytes of expired upload", "upload", d.ID, "err", err)
			}
		}
		if len(due) < sweepBatch || changed == 0 {
			break
		}
	}
	if _, err := s.uploads.PurgeUploads(ctx, now.Add(-UploadPurgeAfter)); err != nil {
		return fmt.Errorf("purge discarded uploads: %w", err)
	}
	return nil
}
