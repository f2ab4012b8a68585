// Package grpcapi adapts the dispatch domain to the lastmile.dispatch.v1 gRPC contract: it decodes
// requests, calls dispatch.Service and encodes the answers. Errors come back as domain errors, unchanged;
// the server's error interceptor maps them to gRPC status codes (grpcerr.ToStatus). Authentication and the
// per-method Policy run in the interceptor chain before any handler; which tasks a caller may see or change
// is the domain's object-level check, and every task the domain returns is already redacted for the
// caller.
package grpcapi

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc"

	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
	"lastmile/internal/dispatch"
	"lastmile/internal/platform/apperr"
)

// Server implements dispatchv1.DispatchServiceServer over a dispatch.Service.
type Server struct {
	dispatchv1.UnimplementedDispatchServiceServer
	uploadHandlers
	svc *dispatch.Service

	stopOnce sync.Once
	stop     chan struct{}
}

var _ dispatchv1.DispatchServiceServer = (*Server)(nil)

// NewServer returns a Server answering with svc.
func NewServer(svc *dispatch.Service) *Server {
	stop := make(chan struct{})
	return &Server{uploadHandlers: uploadHandlers{svc: svc, stop: stop}, svc: svc, stop: stop}
}

// Shutdown ends every open WatchTask and WatchTasks stream with Unavailable (the client watches again,
// on another replica if this one is going away), and every UploadProof stream between two messages (the
// app resumes the upload). Register it with the gRPC server's OnShutdown, beside
// dispatch.Service.Drain for the courier sessions, so that open watches do not hold up a graceful stop
// until its deadline.
func (s *Server) Shutdown() { s.stopOnce.Do(func() { close(s.stop) }) }

// watchContext returns a context for a watch that ends with parent or at Shutdown, and the error to
// return instead of the watch's when Shutdown ended it.
func (s *Server) watchContext(parent context.Context) (context.Context, func(error) error) {
	ctx, cancel := context.WithCancel(parent)
	done := make(chan struct{})
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-done:
		}
	}()
	return ctx, func(err error) error {
		close(done)
		cancel()
		select {
		case <-s.stop:
			if parent.Err() == nil {
				return apperr.Errorf(apperr.Unavailable, "the server is shutting down; watch again")
			}
		default:
		}
		return err
	}
}

// now is the service's clock, which stamps the session's messages.
func (s *Server) now() time.Time { return s.svc.Now() }

// Register registers srv on s.
func Register(s grpc.ServiceRegistrar, srv *Server) { dispatchv1.RegisterDispatchServiceServer(s, srv) }

// CreateTask implements dispatchv1.DispatchServiceServer.
func (s *Server) CreateTask(ctx context.Context, req *dispatchv1.CreateTaskRequest) (*dispatchv1.Task, error) {
	in, err := decodeCreate(req)
	if err != nil {
		return nil, err
	}
	t, err := s.svc.CreateTask(ctx, in)
	if err != nil {
		return nil, err
	}
	return encodeTask(t), nil
}

// GetTask implements dispatchv1.DispatchServiceServer. With a share token the task is read by the token
// alone (dispatch.Service.GetSharedTask), in the share view whatever view asks for.
func (s *Server) GetTask(ctx context.Context, req *dispatchv1.GetTaskRequest) (*dispatchv1.Task, error) {
	var t dispatch.Task
	var err error
	if tok := req.GetShareToken(); tok != "" {
		t, err = s.svc.GetSharedTask(ctx, req.GetId(), tok)
	} else {
		t, err = s.svc.GetTask(ctx, req.GetId(), views.Decode(req.GetView()))
	}
	if err != nil {
		return nil, err
	}
	return encodeTask(t), nil
}

// ListTasks implements dispatchv1.DispatchServiceServer.
func (s *Server) ListTasks(ctx context.Context, req *dispatchv1.ListTasksRequest) (*dispatchv1.ListTasksResponse, error) {
	page, err := s.svc.ListTasks(ctx, dispatch.ListRequest{
		PageSize:  int(req.GetPageSize()),
		PageToken: req.GetPageToken(),
		Filter:    decodeFilter(req.GetStates(), req.GetCourierId(), req.GetCustomerId()),
		View:      views.Decode(req.GetView()),
	})
	if err != nil {
		return nil, err
	}
	return &dispatchv1.ListTasksResponse{Tasks: encodeTasks(page.Tasks), NextPageToken: page.NextPageToken, TotalSize: int32(page.Total)}, nil
}

// CancelTask implements dispatchv1.DispatchServiceServer.
func (s *Server) CancelTask(ctx context.Context, req *dispatchv1.CancelTaskRequest) (*dispatchv1.Task, error) {
	t, err := s.svc.CancelTask(ctx, dispatch.CancelRequest{
		ID: req.GetId(), Reason: cancelReasons.Decode(req.GetReason()), Comment: req.GetComment(), ETag: req.GetEtag(),
	})
	if err != nil {
		return nil, err
	}
	return encodeTask(t), nil
}

// AssignTask implements dispatchv1.DispatchServiceServer.
func (s *Server) AssignTask(ctx context.Context, req *dispatchv1.AssignTaskRequest) (*dispatchv1.Task, error) {
	t, err := s.svc.AssignTask(ctx, dispatch.AssignRequest{
		ID: req.GetId(), CourierID: req.GetCourierId(), Comment: req.GetComment(), ETag: req.GetEtag(),
	})
	if err != nil {
		return nil, err
	}
	return encodeTask(t), nil
}

// ExplainAssignment implements dispatchv1.DispatchServiceServer.
func (s *Server) ExplainAssignment(ctx context.Context, req *dispatchv1.ExplainAssignmentRequest) (*dispatchv1.AssignmentExplanation, error) {
	e, err := s.svc.ExplainAssignment(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	return encodeExplanation(e), nil
}

// GetCourierStatus implements dispatchv1.DispatchServiceServer.
func (s *Server) GetCourierStatus(ctx context.Context, req *dispatchv1.GetCourierStatusRequest) (*dispatchv1.CourierOverview, error) {
	o, err := s.svc.CourierOverview(ctx, req.GetCourierId())
	if err != nil {
		return nil, err
	}
	return encodeOverview(o), nil
}

// UploadProof implements dispatchv1.DispatchServiceServer (uploadHandlers.UploadProof).
func (s *Server) UploadProof(stream dispatchv1.DispatchService_UploadProofServer) error {
	return s.uploadHandlers.UploadProof(stream)
}

// GetUpload implements dispatchv1.DispatchServiceServer (uploadHandlers.GetUpload).
func (s *Server) GetUpload(ctx context.Context, req *dispatchv1.GetUploadRequest) (*dispatchv1.Upload, error) {
	return s.uploadHandlers.GetUpload(ctx, req)
}

// GetProofContent implements dispatchv1.DispatchServiceServer (uploadHandlers.GetProofContent).
func (s *Server) GetProofContent(req *dispatchv1.GetProofContentRequest, stream dispatchv1.DispatchService_GetProofContentServer) error {
	return s.uploadHandlers.GetProofContent(req, stream)
}

// CreateTaskShareLink implements dispatchv1.DispatchServiceServer.
func (s *Server) CreateTaskShareLink(ctx context.Context, req *dispatchv1.CreateTaskShareLinkRequest) (*dispatchv1.TaskShareLink, error) {
	var ttl time.Duration
	if d := req.GetTtl(); d != nil {
		if err := d.CheckValid(); err != nil {
			return nil, apperr.InvalidFields("invalid request", apperr.FieldViolation{Field: "ttl", Description: "must be a valid duration"})
		}
		ttl = d.AsDuration()
	}
	l, err := s.svc.CreateShareLink(ctx, req.GetTaskId(), ttl)
	if err != nil {
		return nil, err
	}
	return &dispatchv1.TaskShareLink{TaskId: l.TaskID, Token: l.Token, ExpireTime: timestamp(l.ExpireTime), Path: l.Path}, nil
}
