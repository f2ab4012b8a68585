// Package courierclient adapts the courier service's gRPC client to the dispatch domain's Couriers port:
// dispatch searches couriers near a pickup, reads one courier's live state, finds the courier profile of
// a courier user and the user of a courier, and claims and releases couriers' capacity. The courier service's status codes are
// translated into domain errors at this boundary (grpcerr.FromStatus): NotFound stays NotFound,
// FailedPrecondition (a refused claim) stays FailedPrecondition, and courier being unreachable or broken
// is Unavailable.
package courierclient

import (
	"context"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	"lastmile/internal/dispatch"
	"lastmile/internal/geo"
	"lastmile/internal/geo/geoproto"
	"lastmile/internal/platform/apperr/grpcerr"
	"lastmile/internal/platform/protoenum"
)

// Contract bounds of FindNearbyCouriersRequest.
const (
	maxRadius  = 50000.0
	maxLimit   = 100
	maxExclude = 100
)

// Client implements dispatch.Couriers over courier's CourierService.
type Client struct {
	couriers courierv1.CourierServiceClient
}

var _ dispatch.Couriers = (*Client)(nil)

// New returns a Client calling couriers. The connection must present dispatch's service identity: courier
// admits FindNearbyCouriers, ClaimCourier and ReleaseCourier from it alone.
func New(couriers courierv1.CourierServiceClient) *Client { return &Client{couriers: couriers} }

// FindNearby implements dispatch.Couriers. It asks for couriers with at least one free slot. The contract
// bounds the radius (50 km), the limit and the excluded ids (100 each); beyond them the radius and limit
// are clamped, and the excluded ids past the first 100 are filtered out of the answer here.
func (c *Client) FindNearby(ctx context.Context, q dispatch.NearbyQuery) ([]dispatch.CourierInfo, error) {
	req := &courierv1.FindNearbyCouriersRequest{
		Location:        geoproto.LatLngProto(q.Center),
		RadiusMeters:    min(q.Radius, maxRadius),
		Limit:           int32(min(max(q.Limit, 0), maxLimit)),
		MinFreeCapacity: 1,
	}
	for _, m := range q.Modes {
		req.TransportModes = append(req.TransportModes, geoproto.ModeProto(m))
	}
	exclude := slices.Compact(slices.Sorted(slices.Values(q.Exclude)))
	rest := exclude[min(len(exclude), maxExclude):]
	req.ExcludeCourierIds = exclude[:min(len(exclude), maxExclude)]
	if q.MaxAge > 0 {
		req.MaxLocationAge = durationpb.New(q.MaxAge)
	}
	res, err := c.couriers.FindNearbyCouriers(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("find couriers near %v: %w", q.Center, grpcerr.FromStatus("courier", err))
	}
	out := make([]dispatch.CourierInfo, 0, len(res.GetCouriers()))
	for _, n := range res.GetCouriers() {
		info := Info(n.GetCourier())
		if _, found := slices.BinarySearch(rest, info.ID); found {
			continue
		}
		info.Distance = n.GetDistanceMeters()
		out = append(out, info)
	}
	return out, nil
}

// Status implements dispatch.Couriers.
func (c *Client) Status(ctx context.Context, courierID string) (dispatch.CourierInfo, error) {
	s, err := c.couriers.GetCourierStatus(ctx, &courierv1.GetCourierStatusRequest{CourierId: courierID})
	if err != nil {
		return dispatch.CourierInfo{}, fmt.Errorf("get status of courier %s: %w", courierID, grpcerr.FromStatus("courier", err))
	}
	return Info(s), nil
}

// CourierOfUser implements dispatch.Couriers.
func (c *Client) CourierOfUser(ctx context.Context, userID string) (string, error) {
	cr, err := c.couriers.GetCourier(ctx, &courierv1.GetCourierRequest{Lookup: &courierv1.GetCourierRequest_UserId{UserId: userID}})
	if err != nil {
		return "", fmt.Errorf("get courier of user %s: %w", userID, grpcerr.FromStatus("courier", err))
	}
	return cr.GetId(), nil
}

// UserOfCourier implements dispatch.Couriers.
func (c *Client) UserOfCourier(ctx context.Context, courierID string) (string, error) {
	cr, err := c.couriers.GetCourier(ctx, &courierv1.GetCourierRequest{Lookup: &courierv1.GetCourierRequest_Id{Id: courierID}})
	if err != nil {
		return "", fmt.Errorf("get courier %s: %w", courierID, grpcerr.FromStatus("courier", err))
	}
	return cr.GetUserId(), nil
}

// Claim implements dispatch.Couriers. A claim that already exists succeeds (the courier service answers
// already_claimed); superseded is the answer's.
func (c *Client) Claim(ctx context.Context, courierID, taskID string, expectedRelease time.Time, generation int64) (bool, error) {
	req := &courierv1.ClaimCourierRequest{CourierId: courierID, TaskId: taskID, Generation: generation}
	if !expectedRelease.IsZero() {
		req.ExpectedReleaseTime = timestamppb.New(expectedRelease)
	}
	res, err := c.couriers.ClaimCourier(ctx, req)
	if err != nil {
		return false, fmt.Errorf("claim courier %s for task %s: %w", courierID, taskID, grpcerr.FromStatus("courier", err))
	}
	return res.GetSuperseded(), nil
}

// Release implements dispatch.Couriers. Releasing a claim that does not exist succeeds.
func (c *Client) Release(ctx context.Context, courierID, taskID string, generation int64) error {
	if _, err := c.couriers.ReleaseCourier(ctx, &courierv1.ReleaseCourierRequest{CourierId: courierID, TaskId: taskID, Generation: generation}); err != nil {
		return fmt.Errorf("release courier %s from task %s: %w", courierID, taskID, grpcerr.FromStatus("courier", err))
	}
	return nil
}

var statuses = protoenum.New(map[dispatch.CourierStatus]courierv1.CourierStatus{
	dispatch.CourierOffline:   courierv1.CourierStatus_COURIER_STATUS_OFFLINE,
	dispatch.CourierAvailable: courierv1.CourierStatus_COURIER_STATUS_AVAILABLE,
	dispatch.CourierOnBreak:   courierv1.CourierStatus_COURIER_STATUS_ON_BREAK,
	dispatch.CourierBusy:      courierv1.CourierStatus_COURIER_STATUS_BUSY,
})

// Info returns the domain view of a courier snapshot.
func Info(s *courierv1.CourierSnapshot) dispatch.CourierInfo {
	out := dispatch.CourierInfo{
		ID:           s.GetCourierId(),
		DisplayName:  s.GetDisplayName(),
		Mode:         geoproto.Mode(s.GetTransportMode()),
		Status:       statuses.Decode(s.GetStatus()),
		AvailableNow: s.GetAvailableNow(),
		ActiveTasks:  int(s.GetActiveTaskCount()),
		Capacity:     int(s.GetCapacity()),
		TaskIDs:      slices.Clone(s.GetActiveTaskIds()),
		LocationAge:  s.GetLocationAge().AsDuration(),
	}
	if l := s.GetLastLocation(); l != nil {
		out.Fix = &dispatch.Fix{
			Location: geo.LatLng{Lat: l.GetLocation().GetLatitude(), Lng: l.GetLocation().GetLongitude()},
			Time:     l.GetRecordedAt().AsTime(),
			Accuracy: l.GetAccuracyMeters(),
			Speed:    l.GetSpeed(),
			Heading:  l.GetHeading(),
		}
	}
	return out
}

// Snapshot returns the API message of a courier's live state: the inverse of Info, for dispatch's own
// API (GetCourierStatus), which shows the courier service's view next to dispatch's.
func Snapshot(c dispatch.CourierInfo) *courierv1.CourierSnapshot {
	out := &courierv1.CourierSnapshot{
		CourierId:       c.ID,
		TransportMode:   geoproto.ModeProto(c.Mode),
		Status:          statuses.Encode(c.Status),
		AvailableNow:    c.AvailableNow,
		ActiveTaskCount: int32(c.ActiveTasks),
		Capacity:        int32(c.Capacity),
		ActiveTaskIds:   slices.Clone(c.TaskIDs),
		DisplayName:     c.DisplayName,
	}
	if f := c.Fix; f != nil {
		out.LastLocation = &courierv1.LocationFix{
			Location:       geoproto.LatLngProto(f.Location),
			RecordedAt:     timestamppb.New(f.Time),
			AccuracyMeters: f.Accuracy,
		}
		if speed := f.Speed; speed > 0 {
			out.LastLocation.Speed = &speed
		}
		if heading := f.Heading; heading > 0 {
			out.LastLocation.Heading = &heading
		}
		out.LocationAge = durationpb.New(c.LocationAge)
	}
	return out
}

var _ dispatch.CourierWatcher = (*Client)(nil)

// WatchCouriers implements dispatch.CourierWatcher with courier's WatchCouriers stream of every courier:
// an event that merges the stream's opening snapshot with later changes counts as a snapshot. It returns
// when the stream ends (Unavailable when courier shuts down) or ctx does.
func (c *Client) WatchCouriers(ctx context.Context, fn func(dispatch.CourierEvent)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.couriers.WatchCouriers(ctx, &courierv1.WatchCouriersRequest{})
	if err != nil {
		return fmt.Errorf("watch couriers: %w", grpcerr.FromStatus("courier", err))
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("watch couriers: %w", grpcerr.FromStatus("courier", err))
		}
		fn(dispatch.CourierEvent{
			Courier:  Info(ev.GetCourier()),
			Snapshot: slices.Contains(ev.GetChanges(), courierv1.CourierChange_COURIER_CHANGE_SNAPSHOT),
		})
	}
}
