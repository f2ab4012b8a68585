// Package grpcapi adapts the dispatch domain to the lastmile.dispatch.v1 gRPC contract: it decodes
// requests, calls dispatch.Service and encodes the answers. Errors come back as domain errors, unchanged;
// the server's error interceptor maps them to gRPC status codes (grpcerr.ToStatus). Authentication and the
// per-method Policy run in the interceptor chain before any handler; which tasks a caller may see or change
// is the domain's object-level check, and every task the domain returns is already redacted for the
// caller.
package grpcapi

import (
	"context"
	"time"

	"google.golang.org/grpc"

	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
	"lastmile/internal/dispatch"
)

// Server implements dispatchv1.DispatchServiceServer over a dispatch.Service.
type Server struct {
	dispatchv1.UnimplementedDispatchServiceServer
	svc *dispatch.Service
}

var _ dispatchv1.DispatchServiceServer = (*Server)(nil)

// NewServer returns a Server answering with svc.
func NewServer(svc *dispatch.Service) *Server { return &Server{svc: svc} }

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

// GetTask implements dispatchv1.DispatchServiceServer.
func (s *Server) GetTask(ctx context.Context, req *dispatchv1.GetTaskRequest) (*dispatchv1.Task, error) {
	t, err := s.svc.GetTask(ctx, req.GetId(), views.Decode(req.GetView()))
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
