package grpcapi

import (
	"context"
	"time"

	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
	"lastmile/internal/dispatch"
)

// WatchTask implements dispatchv1.DispatchServiceServer: the domain's watch (dispatch.Service.WatchTask)
// with each update encoded as it is sent. It ends with OK after the task's final state was sent, and
// with Unavailable at Shutdown.
func (s *Server) WatchTask(req *dispatchv1.WatchTaskRequest, stream dispatchv1.DispatchService_WatchTaskServer) error {
	ctx, end := s.watchContext(stream.Context())
	watch := s.svc.WatchTask
	if tok := req.GetShareToken(); tok != "" {
		// A share link's watch: answered by the token alone, in the share view.
		watch = func(ctx context.Context, id string, send func(dispatch.TaskUpdate) error) error {
			return s.svc.WatchSharedTask(ctx, id, tok, send)
		}
	}
	return end(watch(ctx, req.GetId(), func(u dispatch.TaskUpdate) error {
		out := &dispatchv1.WatchTaskResponse{}
		if u.Task != nil {
			out.Task = encodeTask(*u.Task)
		}
		if u.Fix != nil {
			out.CourierLocation = encodeFix(*u.Fix)
		}
		if e := u.ETA; e != nil {
			out.Eta = &dispatchv1.TaskEta{PickupTime: timestamp(e.PickupTime), DropoffTime: timestamp(e.DropoffTime),
				ComputeTime: timestamp(e.ComputeTime), Degraded: e.Degraded}
		}
		return stream.Send(out)
	}))
}

// WatchTasks implements dispatchv1.DispatchServiceServer: the domain's watch (dispatch.Service.WatchTasksSince)
// with each item encoded as it is sent. It does not end on its own; Shutdown ends it with Unavailable.
func (s *Server) WatchTasks(req *dispatchv1.WatchTasksRequest, stream dispatchv1.DispatchService_WatchTasksServer) error {
	f := decodeFilter(req.GetStates(), req.GetCourierId(), req.GetCustomerId())
	ctx, end := s.watchContext(stream.Context())
	var since time.Time
	if req.GetChangedSince() != nil {
		since = req.GetChangedSince().AsTime()
	}
	return end(s.svc.WatchTasksSince(ctx, f, views.Decode(req.GetView()), since, func(it dispatch.WatchItem) error {
		out := &dispatchv1.WatchTasksResponse{}
		switch {
		case it.Task != nil:
			out.Kind = &dispatchv1.WatchTasksResponse_Task{Task: encodeTask(*it.Task)}
		case it.SnapshotComplete != nil:
			out.Kind = &dispatchv1.WatchTasksResponse_SnapshotComplete{SnapshotComplete: &dispatchv1.WatchTasksSnapshotComplete{
				TaskCount: int32(it.SnapshotComplete.TaskCount), Truncated: it.SnapshotComplete.Truncated}}
		}
		return stream.Send(out)
	}))
}
