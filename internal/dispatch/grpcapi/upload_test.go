package grpcapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/api/httpbody"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/blob"
	"lastmile/internal/dispatch/sqlite"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/database/databasetest"
	"lastmile/internal/platform/grpcserver"
	"lastmile/internal/platform/grpcserver/grpctest"
)

// upServer serves only the proof RPCs, as Server will through its embedded uploadHandlers.
type upServer struct {
	dispatchv1.UnimplementedDispatchServiceServer
	h uploadHandlers
}

func (s *upServer) UploadProof(st dispatchv1.DispatchService_UploadProofServer) error {
	return s.h.UploadProof(st)
}

func (s *upServer) GetUpload(ctx context.Context, req *dispatchv1.GetUploadRequest) (*dispatchv1.Upload, error) {
	return s.h.GetUpload(ctx, req)
}

func (s *upServer) GetProofContent(req *dispatchv1.GetProofContentRequest, st dispatchv1.DispatchService_GetProofContentServer) error {
	return s.h.GetProofContent(req, st)
}

// upCouriers is the courier service as uploads use it: user id to courier id.
type upCouriers map[string]string

func (c upCouriers) FindNearby(context.Context, dispatch.NearbyQuery) ([]dispatch.CourierInfo, error) {
	return nil, nil
}

func (c upCouriers) Status(_ context.Context, id string) (dispatch.CourierInfo, error) {
	return dispatch.CourierInfo{}, apperr.Errorf(apperr.NotFound, "courier %s not found", id)
}

func (c upCouriers) CourierOfUser(_ context.Context, userID string) (string, error) {
	if id, ok := c[userID]; ok {
		return id, nil
	}
	return "", apperr.Errorf(apperr.NotFound, "user %s has no courier profile", userID)
}

func (c upCouriers) UserOfCourier(_ context.Context, courierID string) (string, error) {
	for user, id := range c {
		if id == courierID {
			return user, nil
		}
	}
	return "", apperr.Errorf(apperr.NotFound, "courier %s not found", courierID)
}

func (c upCouriers) Claim(context.Context, string, string, time.Time, int64) (bool, error) {
	return false, nil
}
func (c upCouriers) Release(context.Context, string, string, int64) error { return nil }

type upEnv struct {
	client                                dispatchv1.DispatchServiceClient
	stop                                  chan struct{}
	taskID                                string
	holder, offered, stranger, dispatcher auth.Principal
}

func newUUID() string { return uuid.Must(uuid.NewV7()).String() }

func startUpEnv(t *testing.T) *upEnv {
	t.Helper()
	return startUpEnvWith(t, nil)
}

// startUpEnvWith is startUpEnv with the server's stream limits.
func startUpEnvWith(t *testing.T, streams map[string]grpcserver.StreamLimit) *upEnv {
	t.Helper()
	store := sqlite.New(databasetest.MigratedSQLite(t, "dispatch", sqlite.Migrate))
	files, err := blob.NewFiles(filepath.Join(t.TempDir(), blob.DefaultDir))
	if err != nil {
		t.Fatalf("NewFiles: %v", err)
	}
	couriers := upCouriers{"u-holder": "c-holder", "u-offered": "c-offered", "u-stranger": "c-stranger"}
	taskID := newUUID()
	now := time.Now()
	if _, _, err := store.CreateTask(context.Background(), dispatch.Task{
		ID: taskID, CustomerID: "cust-1", State: dispatch.StatePickedUp, CourierID: "c-holder",
		Offers:    []dispatch.Offer{{ID: newUUID(), CourierID: "c-offered", State: dispatch.OfferDeclined}},
		CreatedBy: "uploads-test", RequestID: taskID, CreateTime: now, UpdateTime: now,
	}); err != nil {
		t.Fatalf("CreateTask: %v", err)
	}
	svc := dispatch.NewService(dispatch.Deps{
		Store: store, Uploads: store.Uploads(), Blobs: files, Couriers: couriers,
	}, dispatch.Options{Logger: slog.New(slog.DiscardHandler)})
	e := &upEnv{
		stop:       make(chan struct{}),
		taskID:     taskID,
		holder:     auth.Principal{Kind: auth.User, Subject: "u-holder", Roles: []string{auth.RoleCourier}},
		offered:    auth.Principal{Kind: auth.User, Subject: "u-offered", Roles: []string{auth.RoleCourier}},
		stranger:   auth.Principal{Kind: auth.User, Subject: "u-stranger", Roles: []string{auth.RoleCourier}},
		dispatcher: auth.Principal{Kind: auth.User, Subject: "d-1", Roles: []string{auth.RoleDispatcher}},
	}
	policy := auth.Policy{}
	for _, m := range dispatchv1.DispatchService_ServiceDesc.Methods {
		policy["/"+dispatchv1.DispatchService_ServiceDesc.ServiceName+"/"+m.MethodName] = auth.Users()
	}
	for _, s := range dispatchv1.DispatchService_ServiceDesc.Streams {
		policy["/"+dispatchv1.DispatchService_ServiceDesc.ServiceName+"/"+s.StreamName] = auth.Users()
	}
	srv := &upServer{h: uploadHandlers{svc: svc, stop: e.stop}}
	_, conn := grpctest.Start(t, grpcserver.Config{Policy: policy, Authenticator: grpctest.HeaderAuthenticator{}, Streams: streams},
		func(s *grpc.Server) { dispatchv1.RegisterDispatchServiceServer(s, srv) })
	e.client = dispatchv1.NewDispatchServiceClient(conn)
	return e
}

func callCtx(t *testing.T, p auth.Principal) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return grpctest.CallAs(ctx, p)
}

func pngFile(n int) []byte {
	b := bytes.Repeat([]byte{0x42}, n)
	copy(b, "\x89PNG\r\n\x1a\n")
	return b
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func startMsg(taskID, uploadID string, file []byte) *dispatchv1.UploadProofRequest {
	return &dispatchv1.UploadProofRequest{Kind: &dispatchv1.UploadProofRequest_Start{Start: &dispatchv1.UploadStart{
		TaskId: taskID, UploadId: uploadID, Kind: dispatchv1.ProofKind_PROOF_KIND_PHOTO, ContentType: "image/png",
		SizeBytes: int64(len(file)), Sha256: hexSum(file),
	}}}
}

func chunkMsg(off int, data []byte) *dispatchv1.UploadProofRequest {
	return &dispatchv1.UploadProofRequest{Kind: &dispatchv1.UploadProofRequest_Chunk{Chunk: &dispatchv1.UploadChunk{Offset: int64(off), Data: data}}}
}

func finishMsg() *dispatchv1.UploadProofRequest {
	return &dispatchv1.UploadProofRequest{Kind: &dispatchv1.UploadProofRequest_Finish{Finish: &dispatchv1.UploadFinish{}}}
}

// open opens an UploadProof stream as p, sends start and returns the stream with its first answer.
func open(t *testing.T, e *upEnv, p auth.Principal, start *dispatchv1.UploadProofRequest) (dispatchv1.DispatchService_UploadProofClient, *dispatchv1.Upload, error) {
	t.Helper()
	st, err := e.client.UploadProof(callCtx(t, p))
	if err != nil {
		t.Fatalf("UploadProof: %v", err)
	}
	if err := st.Send(start); err != nil {
		t.Fatalf("send start: %v", err)
	}
	resp, err := st.Recv()
	return st, resp.GetUpload(), err
}

// send sends msg and returns the answer.
func send(t *testing.T, st dispatchv1.DispatchService_UploadProofClient, msg *dispatchv1.UploadProofRequest) (*dispatchv1.Upload, error) {
	t.Helper()
	if err := st.Send(msg); err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("send: %v", err)
	}
	resp, err := st.Recv()
	return resp.GetUpload(), err
}

func wantStatus(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("%s: code %v (%v), want %v", what, got, err, want)
	}
}

// TestUploadProofResume sends part of a file, ends the stream, resumes it with the same upload id from
// the committed offset, and reads the proof back.
func TestUploadProofResume(t *testing.T) {
	e := startUpEnv(t)
	file := pngFile(5000)
	id := newUUID()
	st, u, err := open(t, e, e.holder, startMsg(e.taskID, id, file))
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	if u.GetId() != id || u.GetCommittedOffset() != 0 || u.GetState() != dispatchv1.UploadState_UPLOAD_STATE_IN_PROGRESS || u.GetExpireTime() == nil {
		t.Fatalf("first answer %v, want %s in progress at 0 with an expire time", u, id)
	}
	if u, err = send(t, st, chunkMsg(0, file[:2000])); err != nil || u.GetCommittedOffset() != 2000 {
		t.Fatalf("chunk answer %v, %v; want offset 2000", u, err)
	}
	// The app goes away: its stream ends without finish, the upload stays in progress.
	if err := st.CloseSend(); err != nil {
		t.Fatalf("CloseSend: %v", err)
	}
	if _, err := st.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("Recv after CloseSend: %v, want EOF", err)
	}
	got, err := e.client.GetUpload(callCtx(t, e.holder), &dispatchv1.GetUploadRequest{UploadId: id})
	if err != nil || got.GetCommittedOffset() != 2000 || got.GetState() != dispatchv1.UploadState_UPLOAD_STATE_IN_PROGRESS {
		t.Fatalf("GetUpload = %v, %v; want in progress at 2000", got, err)
	}

	st, u, err = open(t, e, e.holder, startMsg(e.taskID, id, file))
	if err != nil || u.GetCommittedOffset() != 2000 {
		t.Fatalf("resume answer %v, %v; want offset 2000", u, err)
	}
	for off := 2000; off < len(file); off += 1500 {
		end := min(off+1500, len(file))
		if u, err = send(t, st, chunkMsg(off, file[off:end])); err != nil || u.GetCommittedOffset() != int64(end) {
			t.Fatalf("chunk answer %v, %v; want offset %d", u, err, end)
		}
	}
	u, err = send(t, st, finishMsg())
	if err != nil || u.GetState() != dispatchv1.UploadState_UPLOAD_STATE_COMMITTED || u.GetExpireTime() != nil || u.GetSha256() != hexSum(file) {
		t.Fatalf("finish answer %v, %v; want committed without an expire time", u, err)
	}
	if _, err := st.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("Recv after finish: %v, want EOF", err)
	}

	pc, err := e.client.GetProofContent(callCtx(t, e.dispatcher), &dispatchv1.GetProofContentRequest{TaskId: e.taskID, UploadId: id})
	if err != nil {
		t.Fatalf("GetProofContent: %v", err)
	}
	var content []byte
	for {
		b, err := pc.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("GetProofContent Recv: %v", err)
		}
		if b.GetContentType() != "image/png" {
			t.Fatalf("content type %q, want image/png", b.GetContentType())
		}
		content = append(content, b.GetData()...)
	}
	if !bytes.Equal(content, file) {
		t.Fatalf("GetProofContent: %d bytes, want the %d of the file", len(content), len(file))
	}
}

// TestUploadProofResumeCommitted: the answer to finish is lost (the link drops right after the app sent
// it), so the app resumes the upload under its id, as UploadStart.upload_id allows, to learn where it
// stands. The server answers the upload COMMITTED and ends the stream: the app attaches it. Before, the
// resume was FAILED_PRECONDITION "… is committed, not in progress: start a new upload", and an app that
// did so sent the whole file again, each copy counting toward the task's 8 uploads. A resume that
// describes another file is still refused, and so is one of a REJECTED upload.
func TestUploadProofResumeCommitted(t *testing.T) {
	e := startUpEnv(t)
	file := pngFile(3000)
	id := newUUID()
	st, _, err := open(t, e, e.holder, startMsg(e.taskID, id, file))
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	if _, err := send(t, st, chunkMsg(0, file)); err != nil {
		t.Fatalf("chunk: %v", err)
	}
	if u, err := send(t, st, finishMsg()); err != nil || u.GetState() != dispatchv1.UploadState_UPLOAD_STATE_COMMITTED {
		t.Fatalf("finish answer %v, %v; want committed", u, err)
	}
	committed, err := e.client.GetUpload(callCtx(t, e.holder), &dispatchv1.GetUploadRequest{UploadId: id})
	if err != nil {
		t.Fatalf("GetUpload: %v", err)
	}

	// The resume the app sends: start, then finish (it sees committed_offset = size_bytes).
	st, u, err := open(t, e, e.holder, startMsg(e.taskID, id, file))
	if err != nil {
		t.Fatalf("resume a committed upload: %v", err)
	}
	if !proto.Equal(u, committed) {
		t.Fatalf("resume answer %v, want the committed upload %v", u, committed)
	}
	if err := st.Send(finishMsg()); err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("send finish: %v", err)
	}
	if _, err := st.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("Recv after the committed answer: %v, want EOF", err)
	}
	if got, err := e.client.GetUpload(callCtx(t, e.holder), &dispatchv1.GetUploadRequest{UploadId: id}); err != nil || !proto.Equal(got, committed) {
		t.Fatalf("GetUpload after the resume = %v, %v; want it unchanged %v", got, err, committed)
	}

	other := pngFile(3001)
	_, _, err = open(t, e, e.holder, startMsg(e.taskID, id, other))
	wantStatus(t, "resume describing another file", err, codes.FailedPrecondition)

	bad := newUUID()
	st, _, err = open(t, e, e.holder, startMsg(e.taskID, bad, file))
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	if _, err := send(t, st, chunkMsg(0, pngFile(3000)[:2999])); err != nil {
		t.Fatalf("chunk: %v", err)
	}
	if _, err := send(t, st, chunkMsg(2999, []byte{0})); err != nil {
		t.Fatalf("chunk: %v", err)
	}
	_, err = send(t, st, finishMsg())
	wantStatus(t, "finish of bytes that do not match", err, codes.InvalidArgument)
	_, _, err = open(t, e, e.holder, startMsg(e.taskID, bad, file))
	wantStatus(t, "resume a rejected upload", err, codes.FailedPrecondition)
}

// TestUploadProofStartErrorsNameTheirFields: a start the service refuses names its fields by their path
// in the stream's message, as the message's own validation does: "start.signer_name" both for a control
// character (the contract's pattern) and for a bidirectional control (the service's free-text rule), in
// the sentence and in the BadRequest detail. The service's violations used to say "signer_name".
func TestUploadProofStartErrorsNameTheirFields(t *testing.T) {
	e := startUpEnv(t)
	file := pngFile(100)
	for _, tc := range []struct{ signer, want string }{
		{"Bo\x00", "start.signer_name must not contain control characters"},
		{"Bo \u202egnp.exe", "start.signer_name must not contain bidirectional control characters (U+202A to U+202E, U+2066 to U+2069)"},
	} {
		start := startMsg(e.taskID, "", file)
		start.GetStart().Kind = dispatchv1.ProofKind_PROOF_KIND_SIGNATURE
		start.GetStart().SignerName = tc.signer
		_, _, err := open(t, e, e.holder, start)
		st := status.Convert(err)
		if st.Code() != codes.InvalidArgument || st.Message() != tc.want {
			t.Errorf("start with signer %q: %v %q, want InvalidArgument %q", tc.signer, st.Code(), st.Message(), tc.want)
			continue
		}
		var fields []string
		for _, d := range st.Details() {
			if br, ok := d.(*errdetails.BadRequest); ok {
				for _, v := range br.GetFieldViolations() {
					fields = append(fields, v.GetField())
				}
			}
		}
		if len(fields) != 1 || fields[0] != "start.signer_name" {
			t.Errorf("start with signer %q: BadRequest fields %q, want [start.signer_name]", tc.signer, fields)
		}
	}
}

// TestUploadProofIdleStreamEnds: an UploadProof stream from which no message comes for its idle timeout
// (--dispatch-upload-idle-timeout) is ended with DEADLINE_EXCEEDED, whether the app sent nothing or
// stopped mid-upload, and lets go of all it held: its stream slot (the caller's only one here, so the
// next stream would be refused otherwise) and the upload's writer lease (a minute, so a resume within
// the test would be ABORTED otherwise). The upload waits IN_PROGRESS at its committed offset, and a new
// stream resumes and finishes it. Each stream sends its messages at once, without waiting for answers, so
// that only the pauses the test means count as idle.
func TestUploadProofIdleStreamEnds(t *testing.T) {
	const idle = time.Second
	e := startUpEnvWith(t, map[string]grpcserver.StreamLimit{
		dispatchv1.DispatchService_UploadProof_FullMethodName: {PerCaller: 1, Idle: idle},
	})
	const wantIdle = "stream idle: no message from the client for 1s"
	wantIdleEnd := func(what string, st dispatchv1.DispatchService_UploadProofClient) {
		t.Helper()
		_, err := st.Recv()
		if s := status.Convert(err); s.Code() != codes.DeadlineExceeded || s.Message() != wantIdle {
			t.Fatalf("%s: Recv() = %v, want DEADLINE_EXCEEDED %q", what, err, wantIdle)
		}
	}
	streamAs := func(msgs ...*dispatchv1.UploadProofRequest) dispatchv1.DispatchService_UploadProofClient {
		t.Helper()
		st, err := e.client.UploadProof(callCtx(t, e.holder))
		if err != nil {
			t.Fatalf("UploadProof: %v", err)
		}
		for _, m := range msgs {
			// io.EOF: the server ended the stream; the next Recv says how.
			if err := st.Send(m); err != nil && !errors.Is(err, io.EOF) {
				t.Fatalf("send: %v", err)
			}
		}
		return st
	}
	recvUpload := func(what string, st dispatchv1.DispatchService_UploadProofClient) *dispatchv1.Upload {
		t.Helper()
		resp, err := st.Recv()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return resp.GetUpload()
	}

	// Opened, and nothing sent.
	wantIdleEnd("a stream without start", streamAs())

	// Started, one chunk stored, then silence.
	file := pngFile(5000)
	id := newUUID()
	st := streamAs(startMsg(e.taskID, id, file), chunkMsg(0, file[:2000]))
	if u := recvUpload("start", st); u.GetId() != id || u.GetCommittedOffset() != 0 {
		t.Fatalf("start answer %v, want %s at 0", u, id)
	}
	if u := recvUpload("chunk", st); u.GetCommittedOffset() != 2000 {
		t.Fatalf("chunk answer %v, want offset 2000", u)
	}
	wantIdleEnd("a stream gone quiet mid-upload", st)
	got, err := e.client.GetUpload(callCtx(t, e.holder), &dispatchv1.GetUploadRequest{UploadId: id})
	if err != nil || got.GetCommittedOffset() != 2000 || got.GetState() != dispatchv1.UploadState_UPLOAD_STATE_IN_PROGRESS {
		t.Fatalf("GetUpload = %v, %v; want in progress at 2000", got, err)
	}

	// A new stream resumes it at once, and finishes it.
	st = streamAs(startMsg(e.taskID, id, file), chunkMsg(2000, file[2000:]), finishMsg())
	if u := recvUpload("resume", st); u.GetCommittedOffset() != 2000 {
		t.Fatalf("resume answer %v, want offset 2000", u)
	}
	if u := recvUpload("last chunk", st); u.GetCommittedOffset() != int64(len(file)) {
		t.Fatalf("last chunk answer %v, want offset %d", u, len(file))
	}
	if u := recvUpload("finish", st); u.GetState() != dispatchv1.UploadState_UPLOAD_STATE_COMMITTED {
		t.Fatalf("finish answer %v, want COMMITTED", u)
	}
	if _, err := st.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("Recv after finish: %v, want EOF", err)
	}
}

// TestGetProofContentLarge reads a proof bigger than one message.
func TestGetProofContentLarge(t *testing.T) {
	e := startUpEnv(t)
	file := pngFile(3*contentChunk + 17)
	st, u, err := open(t, e, e.holder, startMsg(e.taskID, "", file))
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	for off := 0; off < len(file); off += dispatch.MaxChunkBytes {
		if _, err := send(t, st, chunkMsg(off, file[off:min(off+dispatch.MaxChunkBytes, len(file))])); err != nil {
			t.Fatalf("chunk: %v", err)
		}
	}
	if _, err := send(t, st, finishMsg()); err != nil {
		t.Fatalf("finish: %v", err)
	}
	pc, err := e.client.GetProofContent(callCtx(t, e.holder), &dispatchv1.GetProofContentRequest{TaskId: e.taskID, UploadId: u.GetId()})
	if err != nil {
		t.Fatalf("GetProofContent: %v", err)
	}
	var msgs []*httpbody.HttpBody
	var content []byte
	for {
		b, err := pc.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Recv: %v", err)
		}
		msgs = append(msgs, b)
		content = append(content, b.GetData()...)
	}
	if len(msgs) != 4 || !bytes.Equal(content, file) {
		t.Fatalf("%d messages, %d bytes; want 4 messages and the file", len(msgs), len(content))
	}
	pc, err = e.client.GetProofContent(callCtx(t, e.stranger), &dispatchv1.GetProofContentRequest{TaskId: e.taskID, UploadId: u.GetId()})
	if err == nil {
		_, err = pc.Recv()
	}
	wantStatus(t, "GetProofContent as a stranger", err, codes.NotFound)
}

func TestUploadProofErrors(t *testing.T) {
	e := startUpEnv(t)
	file := pngFile(100)

	t.Run("checksum", func(t *testing.T) {
		bad := append([]byte(nil), file...)
		bad[50] ^= 1
		st, u, err := open(t, e, e.holder, startMsg(e.taskID, "", file))
		if err != nil {
			t.Fatalf("start: %v", err)
		}
		if _, err := send(t, st, chunkMsg(0, bad)); err != nil {
			t.Fatalf("chunk: %v", err)
		}
		_, err = send(t, st, finishMsg())
		wantStatus(t, "finish", err, codes.InvalidArgument)
		got, err := e.client.GetUpload(callCtx(t, e.holder), &dispatchv1.GetUploadRequest{UploadId: u.GetId()})
		if err != nil || got.GetState() != dispatchv1.UploadState_UPLOAD_STATE_REJECTED {
			t.Fatalf("GetUpload = %v, %v; want rejected", got, err)
		}
	})
	t.Run("first message not start", func(t *testing.T) {
		st, err := e.client.UploadProof(callCtx(t, e.holder))
		if err != nil {
			t.Fatalf("UploadProof: %v", err)
		}
		_, err = send(t, st, chunkMsg(0, file))
		wantStatus(t, "chunk first", err, codes.InvalidArgument)
	})
	t.Run("start twice", func(t *testing.T) {
		st, _, err := open(t, e, e.holder, startMsg(e.taskID, "", file))
		if err != nil {
			t.Fatalf("start: %v", err)
		}
		_, err = send(t, st, startMsg(e.taskID, "", file))
		wantStatus(t, "second start", err, codes.InvalidArgument)
	})
	t.Run("wrong offset", func(t *testing.T) {
		st, _, err := open(t, e, e.holder, startMsg(e.taskID, "", file))
		if err != nil {
			t.Fatalf("start: %v", err)
		}
		_, err = send(t, st, chunkMsg(10, file[10:]))
		wantStatus(t, "chunk at 10", err, codes.FailedPrecondition)
	})
	t.Run("two writers", func(t *testing.T) {
		id := newUUID()
		if _, _, err := open(t, e, e.holder, startMsg(e.taskID, id, file)); err != nil {
			t.Fatalf("start: %v", err)
		}
		_, _, err := open(t, e, e.holder, startMsg(e.taskID, id, file))
		wantStatus(t, "second writer", err, codes.Aborted)
	})
	t.Run("not the holder", func(t *testing.T) {
		_, _, err := open(t, e, e.offered, startMsg(e.taskID, "", file))
		wantStatus(t, "start by a courier who was offered the task", err, codes.FailedPrecondition)
		_, _, err = open(t, e, e.stranger, startMsg(e.taskID, "", file))
		wantStatus(t, "start by a stranger", err, codes.NotFound)
	})
	t.Run("shutdown", func(t *testing.T) {
		st, _, err := open(t, e, e.holder, startMsg(e.taskID, "", file))
		if err != nil {
			t.Fatalf("start: %v", err)
		}
		close(e.stop)
		_, err = st.Recv()
		wantStatus(t, "stream at shutdown", err, codes.Unavailable)
	})
}
