// Package grpcapi adapts the courier domain to the lastmile.courier.v1 gRPC contract: it decodes
// requests, calls courier.Service and encodes the answers. Errors come back as domain errors, unchanged;
// the server's error interceptor maps them to gRPC status codes (grpcerr.ToStatus). Authentication and
// the per-method Policy run in the interceptor chain before any handler; object-level checks (a courier
// acts only on their own record) are the domain's.
package grpcapi

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	"lastmile/internal/courier"
)

// Server implements courierv1.CourierServiceServer over a courier.Service.
type Server struct {
	courierv1.UnimplementedCourierServiceServer
	svc *courier.Service

	stopOnce sync.Once
	stop     chan struct{}
}

var _ courierv1.CourierServiceServer = (*Server)(nil)

// NewServer returns a Server answering with svc.
func NewServer(svc *courier.Service) *Server { return &Server{svc: svc, stop: make(chan struct{})} }

// Shutdown ends every open ReportLocations stream: each answers with the counts of what it accepted, and
// the app reconnects, to another replica if this one is going away. Register it with the gRPC server's
// OnShutdown so that open streams do not hold up a graceful stop until its deadline.
func (s *Server) Shutdown() { s.stopOnce.Do(func() { close(s.stop) }) }

// Register registers srv on s.
func Register(s grpc.ServiceRegistrar, srv *Server) { courierv1.RegisterCourierServiceServer(s, srv) }

// RegisterCourier implements courierv1.CourierServiceServer.
func (s *Server) RegisterCourier(ctx context.Context, req *courierv1.RegisterCourierRequest) (*courierv1.Courier, error) {
	c, err := s.svc.RegisterCourier(ctx, courier.RegisterRequest{
		UserID:      req.GetUserId(),
		DisplayName: req.GetDisplayName(),
		Mode:        decodeMode(req.GetTransportMode()),
		Capacity:    int(req.GetCapacity()),
	})
	if err != nil {
		return nil, err
	}
	return encodeCourier(c), nil
}

// GetCourier implements courierv1.CourierServiceServer.
func (s *Server) GetCourier(ctx context.Context, req *courierv1.GetCourierRequest) (*courierv1.Courier, error) {
	c, err := s.svc.GetCourier(ctx, courier.Lookup{ID: req.GetId(), UserID: req.GetUserId()})
	if err != nil {
		return nil, err
	}
	return encodeCourier(c), nil
}

// ListCouriers implements courierv1.CourierServiceServer.
func (s *Server) ListCouriers(ctx context.Context, req *courierv1.ListCouriersRequest) (*courierv1.ListCouriersResponse, error) {
	page, err := s.svc.ListCouriers(ctx, courier.ListRequest{
		PageSize:  int(req.GetPageSize()),
		PageToken: req.GetPageToken(),
		Filter:    courier.Filter{Status: decodeStatus(req.GetStatus()), Mode: decodeMode(req.GetTransportMode())},
	})
	if err != nil {
		return nil, err
	}
	out := &courierv1.ListCouriersResponse{
		Couriers:      make([]*courierv1.Courier, len(page.Couriers)),
		NextPageToken: page.NextPageToken,
		TotalSize:     int32(page.Total),
	}
	for i, c := range page.Couriers {
		out.Couriers[i] = encodeCourier(c)
	}
	return out, nil
}

// UpdateCourier implements courierv1.CourierServiceServer.
func (s *Server) UpdateCourier(ctx context.Context, req *courierv1.UpdateCourierRequest) (*courierv1.Courier, error) {
	in := req.GetCourier()
	up := courier.UpdateRequest{
		ID:          in.GetId(),
		DisplayName: in.GetDisplayName(),
		Mode:        decodeMode(in.GetTransportMode()),
		Capacity:    int(in.GetCapacity()),
		Etag:        in.GetEtag(),
	}
	for _, p := range req.GetUpdateMask().GetPaths() {
		up.Fields = append(up.Fields, courier.Field(p))
	}
	c, err := s.svc.UpdateCourier(ctx, up)
	if err != nil {
		return nil, err
	}
	return encodeCourier(c), nil
}

// SetAvailability implements courierv1.CourierServiceServer.
func (s *Server) SetAvailability(ctx context.Context, req *courierv1.SetAvailabilityRequest) (*courierv1.SetAvailabilityResponse, error) {
	var d decoder
	hours := make([]time.Time, len(req.GetHours()))
	for i, h := range req.GetHours() {
		hours[i] = d.timestamp(indexed("hours", i), h)
	}
	if err := d.err(); err != nil {
		return nil, err
	}
	slots, err := s.svc.SetAvailability(ctx, req.GetCourierId(), hours, req.GetAvailable())
	if err != nil {
		return nil, err
	}
	return &courierv1.SetAvailabilityResponse{Slots: encodeSlots(slots)}, nil
}

// GetAvailability implements courierv1.CourierServiceServer.
func (s *Server) GetAvailability(ctx context.Context, req *courierv1.GetAvailabilityRequest) (*courierv1.GetAvailabilityResponse, error) {
	var d decoder
	from := d.timestamp("start_time", req.GetStartTime())
	to := d.timestamp("end_time", req.GetEndTime())
	if err := d.err(); err != nil {
		return nil, err
	}
	slots, err := s.svc.GetAvailability(ctx, req.GetCourierId(), from, to)
	if err != nil {
		return nil, err
	}
	return &courierv1.GetAvailabilityResponse{Slots: encodeSlots(slots)}, nil
}

// IsAvailable implements courierv1.CourierServiceServer.
func (s *Server) IsAvailable(ctx context.Context, req *courierv1.IsAvailableRequest) (*courierv1.IsAvailableResponse, error) {
	var d decoder
	at := d.timestamp("time", req.GetTime())
	if err := d.err(); err != nil {
		return nil, err
	}
	slot, err := s.svc.IsAvailable(ctx, req.GetCourierId(), at)
	if err != nil {
		return nil, err
	}
	return &courierv1.IsAvailableResponse{Available: slot.Available, Slot: encodeSlot(slot)}, nil
}

// SetStatus implements courierv1.CourierServiceServer.
func (s *Server) SetStatus(ctx context.Context, req *courierv1.SetStatusRequest) (*courierv1.CourierSnapshot, error) {
	snap, err := s.svc.SetStatus(ctx, req.GetCourierId(), decodeStatus(req.GetStatus()))
	if err != nil {
		return nil, err
	}
	return encodeSnapshot(snap), nil
}

// ReportLocations implements courierv1.CourierServiceServer. It feeds each message to one domain report
// and answers with the counts when the client closes its side.
func (s *Server) ReportLocations(stream courierv1.CourierService_ReportLocationsServer) error {
	ctx := stream.Context()
	report := s.svc.NewLocationReport()
	// Messages are received on their own goroutine so that a shutdown can end the stream between them.
	msgs := make(chan *courierv1.ReportLocationsRequest)
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
	var fixes []courier.Fix // reused across messages: the domain copies what it keeps
	for {
		select {
		case req := <-msgs:
			fixes = fixes[:0]
			for _, f := range req.GetFixes() {
				fixes = append(fixes, decodeFix(f))
			}
			if err := report.Add(ctx, req.GetCourierId(), fixes); err != nil {
				return err
			}
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				return stream.SendAndClose(encodeIngest(report.Result()))
			}
			return err
		case <-s.stop:
			return stream.SendAndClose(encodeIngest(report.Result()))
		case <-ctx.Done(): // the call ended, or the caller's access was revoked (grpcserver.Config.Subjects)
			return ctx.Err()
		}
	}
}

// GetCourierStatus implements courierv1.CourierServiceServer.
func (s *Server) GetCourierStatus(ctx context.Context, req *courierv1.GetCourierStatusRequest) (*courierv1.CourierSnapshot, error) {
	snap, err := s.svc.GetCourierStatus(ctx, req.GetCourierId())
	if err != nil {
		return nil, err
	}
	return encodeSnapshot(snap), nil
}

// FindNearbyCouriers implements courierv1.CourierServiceServer.
func (s *Server) FindNearbyCouriers(ctx context.Context, req *courierv1.FindNearbyCouriersRequest) (*courierv1.FindNearbyCouriersResponse, error) {
	var d decoder
	p := d.point("location", req.GetLocation())
	maxAge := d.duration("max_location_age", req.GetMaxLocationAge())
	if err := d.err(); err != nil {
		return nil, err
	}
	q := courier.NearbyQuery{
		Lat:             p[0],
		Lng:             p[1],
		RadiusMeters:    req.GetRadiusMeters(),
		Limit:           int(req.GetLimit()),
		MinFreeCapacity: int(req.GetMinFreeCapacity()),
		Exclude:         req.GetExcludeCourierIds(),
		MaxLocationAge:  maxAge,
	}
	for _, m := range req.GetTransportModes() {
		q.Modes = append(q.Modes, decodeMode(m))
	}
	found, err := s.svc.FindNearbyCouriers(ctx, q)
	if err != nil {
		return nil, err
	}
	snaps := encodeSnapshots(len(found), func(i int) *courier.Snapshot { return &found[i].Snapshot })
	nearby := make([]courierv1.NearbyCourier, len(found))
	out := &courierv1.FindNearbyCouriersResponse{Couriers: make([]*courierv1.NearbyCourier, len(found))}
	for i, n := range found {
		nearby[i].Courier, nearby[i].DistanceMeters = &snaps[i], n.DistanceMeters
		out.Couriers[i] = &nearby[i]
	}
	return out, nil
}

// ClaimCourier implements courierv1.CourierServiceServer.
func (s *Server) ClaimCourier(ctx context.Context, req *courierv1.ClaimCourierRequest) (*courierv1.ClaimCourierResponse, error) {
	var d decoder
	release := d.timestamp("expected_release_time", req.GetExpectedReleaseTime())
	if err := d.err(); err != nil {
		return nil, err
	}
	out, err := s.svc.Claim(ctx, courier.ClaimRequest{
		CourierID: req.GetCourierId(), TaskID: req.GetTaskId(), ExpectedRelease: release, Generation: req.GetGeneration()})
	if err != nil {
		return nil, err
	}
	return &courierv1.ClaimCourierResponse{Courier: encodeSnapshot(out.Snapshot), AlreadyClaimed: out.Already, Superseded: out.Superseded}, nil
}

// ReleaseCourier implements courierv1.CourierServiceServer.
func (s *Server) ReleaseCourier(ctx context.Context, req *courierv1.ReleaseCourierRequest) (*courierv1.ReleaseCourierResponse, error) {
	snap, released, err := s.svc.ReleaseCourierGeneration(ctx, req.GetCourierId(), req.GetTaskId(), req.GetGeneration())
	if err != nil {
		return nil, err
	}
	return &courierv1.ReleaseCourierResponse{Courier: encodeSnapshot(snap), Released: released}, nil
}

// WatchCouriers implements courierv1.CourierServiceServer. It ends when the client goes away (the
// stream's context) or the service shuts down (Unavailable).
func (s *Server) WatchCouriers(req *courierv1.WatchCouriersRequest, stream courierv1.CourierService_WatchCouriersServer) error {
	ctx := stream.Context()
	f := courier.WatchFilter{CourierIDs: req.GetCourierIds()}
	if b := req.GetBounds(); b != nil {
		var d decoder
		sw := d.point("bounds.south_west", b.GetSouthWest())
		ne := d.point("bounds.north_east", b.GetNorthEast())
		if err := d.err(); err != nil {
			return err
		}
		f.Bounds = &courier.Box{South: sw[0], West: sw[1], North: ne[0], East: ne[1]}
	}
	w, err := s.svc.Watch(ctx, f)
	if err != nil {
		return err
	}
	defer w.Close()
	// Headers now, not with the first event (which may be a while when no courier matches), saying the
	// watch was accepted: the gateway's event route waits for them before it answers 200.
	if err := stream.SendHeader(metadata.Pairs("lastmile-watch", "open")); err != nil {
		return err
	}
	for {
		evs, err := w.Next(ctx)
		if err != nil {
			return err
		}
		for _, ev := range evs {
			if err := stream.Send(encodeEvent(ev)); err != nil {
				return err
			}
		}
	}
}
