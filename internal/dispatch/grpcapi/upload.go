// This file holds the proof-upload handlers of the dispatch adapter.

package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/genproto/googleapis/api/httpbody"
	"google.golang.org/protobuf/types/known/timestamppb"

	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
	"lastmile/internal/dispatch"
	"lastmile/internal/geo/geoproto"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/protoenum"
)

// uploadHandlers serves the proof RPCs: UploadProof, GetUpload and GetProofContent. Server embeds it.
type uploadHandlers struct {
	svc *dispatch.Service
	// stop, once closed, ends every UploadProof stream between two messages with Unavailable (the app
	// resumes the upload later, on another replica if this one is going away). Nil never stops.
	stop <-chan struct{}
}

// contentChunk bounds the data of one GetProofContent message.
const contentChunk = 256 << 10

// errShuttingDown ends the streams of a server that is shutting down.
var errShuttingDown = apperr.Errorf(apperr.Unavailable, "the server is shutting down; resume the upload")

// UploadProof implements dispatchv1.DispatchServiceServer: start (or resume), chunks at the committed
// offset each answered once durable, then finish, answered with the COMMITTED upload. A stream the client
// closes without finish leaves the upload IN_PROGRESS, to resume.
func (h uploadHandlers) UploadProof(stream dispatchv1.DispatchService_UploadProofServer) error {
	ctx := stream.Context()
	// Messages are received on their own goroutine so that a shutdown can end the stream between them.
	msgs := make(chan *dispatchv1.UploadProofRequest)
	recvErr := make(chan error, 1)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case msgs <- req:
			case <-done:
				return
			}
		}
	}()
	next := func() (*dispatchv1.UploadProofRequest, error) {
		select {
		case req := <-msgs:
			return req, nil
		case err := <-recvErr:
			return nil, err
		case <-h.stop:
			return nil, errShuttingDown
		case <-ctx.Done(): // the call ended, or the caller's access was revoked
			return nil, ctx.Err()
		}
	}

	first, err := next()
	if errors.Is(err, io.EOF) {
		return apperr.Errorf(apperr.Invalid, "the first message must be start")
	}
	if err != nil {
		return err
	}
	start := first.GetStart()
	if start == nil {
		return apperr.Errorf(apperr.Invalid, "the first message must be start")
	}
	req, err := decodeUploadStart(start)
	if err != nil {
		return err
	}
	w, u, err := h.svc.StartUpload(ctx, req)
	if err != nil {
		return inStart(err)
	}
	// Close releases the writer lease; should that fail, the lease lapses by itself.
	defer func() { _ = w.Close(ctx) }()
	if err := stream.Send(&dispatchv1.UploadProofResponse{Upload: encodeUpload(u)}); err != nil {
		return err
	}
	if u.State == dispatch.UploadCommitted {
		// A resumed upload that was committed already (its last answer was lost): that answer was the
		// upload COMMITTED, after which the stream ends.
		return nil
	}
	for {
		msg, err := next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch m := msg.GetKind().(type) {
		case *dispatchv1.UploadProofRequest_Chunk:
			u, err := w.Write(ctx, m.Chunk.GetOffset(), m.Chunk.GetData())
			if err != nil {
				return err
			}
			if err := stream.Send(&dispatchv1.UploadProofResponse{Upload: encodeUpload(u)}); err != nil {
				return err
			}
		case *dispatchv1.UploadProofRequest_Finish:
			u, err := w.Finish(ctx)
			if err != nil {
				return err
			}
			return stream.Send(&dispatchv1.UploadProofResponse{Upload: encodeUpload(u)})
		case *dispatchv1.UploadProofRequest_Start:
			return apperr.Errorf(apperr.Invalid, "start may only be the first message")
		default:
			return apperr.Errorf(apperr.Invalid, "the message has no kind")
		}
	}
}

// GetUpload implements dispatchv1.DispatchServiceServer.
func (h uploadHandlers) GetUpload(ctx context.Context, req *dispatchv1.GetUploadRequest) (*dispatchv1.Upload, error) {
	u, err := h.svc.GetUpload(ctx, req.GetUploadId())
	if err != nil {
		return nil, err
	}
	return encodeUpload(u), nil
}

// GetProofContent implements dispatchv1.DispatchServiceServer: the bytes in messages of up to 256 KiB,
// each carrying the content type.
func (h uploadHandlers) GetProofContent(req *dispatchv1.GetProofContentRequest, stream dispatchv1.DispatchService_GetProofContentServer) error {
	ctx := stream.Context()
	ct, size, rc, err := h.svc.ProofContent(ctx, req.GetTaskId(), req.GetUploadId())
	if err != nil {
		return err
	}
	defer rc.Close()
	buf := make([]byte, max(1, min(size, contentChunk)))
	var sent int64
	for {
		n, err := io.ReadFull(rc, buf)
		if n > 0 {
			sent += int64(n)
			if err := stream.Send(&httpbody.HttpBody{ContentType: ct, Data: buf[:n]}); err != nil {
				return err
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read proof %s: %w", req.GetUploadId(), err)
		}
	}
	if sent != size {
		return fmt.Errorf("read proof %s: %d bytes, %d stored", req.GetUploadId(), sent, size)
	}
	return nil
}

var (
	// uploadKinds is the ProofKind codec of uploads.
	uploadKinds = protoenum.New(map[dispatch.ProofKind]dispatchv1.ProofKind{
		dispatch.ProofPhoto:     dispatchv1.ProofKind_PROOF_KIND_PHOTO,
		dispatch.ProofSignature: dispatchv1.ProofKind_PROOF_KIND_SIGNATURE,
		dispatch.ProofBarcode:   dispatchv1.ProofKind_PROOF_KIND_BARCODE,
		dispatch.ProofCode:      dispatchv1.ProofKind_PROOF_KIND_CODE,
	})
	uploadStates = protoenum.New(map[dispatch.UploadState]dispatchv1.UploadState{
		dispatch.UploadInProgress: dispatchv1.UploadState_UPLOAD_STATE_IN_PROGRESS,
		dispatch.UploadCommitted:  dispatchv1.UploadState_UPLOAD_STATE_COMMITTED,
		dispatch.UploadRejected:   dispatchv1.UploadState_UPLOAD_STATE_REJECTED,
		dispatch.UploadExpired:    dispatchv1.UploadState_UPLOAD_STATE_EXPIRED,
	})
)

// decodeUploadStart decodes a start message; ranges are the domain's to check.
func decodeUploadStart(m *dispatchv1.UploadStart) (dispatch.UploadStartReq, error) {
	req := dispatch.UploadStartReq{
		TaskID:      m.GetTaskId(),
		UploadID:    m.GetUploadId(),
		Kind:        uploadKinds.Decode(m.GetKind()),
		ContentType: m.GetContentType(),
		SizeBytes:   m.GetSizeBytes(),
		SHA256:      m.GetSha256(),
		SignerName:  m.GetSignerName(),
	}
	if ts := m.GetCaptureTime(); ts != nil {
		if err := ts.CheckValid(); err != nil {
			return req, apperr.InvalidFields("invalid upload start", apperr.FieldViolation{Field: "start.capture_time", Description: "is not a valid timestamp"})
		}
		req.CaptureTime = ts.AsTime()
	}
	if p := m.GetCaptureLocation(); p != nil {
		loc := geoproto.LatLng(p)
		req.CaptureLocation = &loc
	}
	return req, nil
}

// encodeUpload encodes an upload; expire_time is unset outside IN_PROGRESS.
func encodeUpload(u dispatch.Upload) *dispatchv1.Upload {
	out := &dispatchv1.Upload{
		Id:              u.ID,
		TaskId:          u.TaskID,
		Kind:            uploadKinds.Encode(u.Kind),
		ContentType:     u.ContentType,
		SizeBytes:       u.SizeBytes,
		CommittedOffset: u.CommittedOffset,
		Sha256:          u.SHA256,
		State:           uploadStates.Encode(u.State),
		CreateTime:      timestamppb.New(u.CreateTime),
		UpdateTime:      timestamppb.New(u.UpdateTime),
	}
	if u.State == dispatch.UploadInProgress && !u.ExpireTime.IsZero() {
		out.ExpireTime = timestamppb.New(u.ExpireTime)
	}
	return out
}

// inStart names the fields of the service's Invalid error by their path in the stream's message
// ("start.signer_name must not contain bidirectional control characters …"), as the validation of the
// message itself names them ("start.signer_name must not contain control characters"), so that an app
// mapping errors to the fields it sent finds them in one place.
func inStart(err error) error {
	e := apperr.As(err)
	if e == nil || e.Code != apperr.Invalid || len(e.Violations) == 0 {
		return err
	}
	vs := make([]apperr.FieldViolation, len(e.Violations))
	for i, v := range e.Violations {
		if v.Field != "" {
			v.Field = "start." + v.Field
		}
		vs[i] = v
	}
	return apperr.InvalidRequest(vs...)
}
