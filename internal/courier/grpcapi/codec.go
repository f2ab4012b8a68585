package grpcapi

import (
	"fmt"
	"math"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	geov1 "lastmile/gen/go/lastmile/geo/v1"
	"lastmile/internal/courier"
	"lastmile/internal/geo/geoproto"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/protoenum"
)

// decoder collects what the domain cannot see once a request is decoded: missing messages and malformed
// timestamps and durations. Ranges and enum values are the domain's to check.
type decoder struct {
	violations []apperr.FieldViolation
}

func (d *decoder) add(field, desc string) {
	d.violations = append(d.violations, apperr.FieldViolation{Field: field, Description: desc})
}

func (d *decoder) point(field string, p *geov1.LatLng) [2]float64 {
	if p == nil {
		d.add(field, "is required")
		return [2]float64{}
	}
	return [2]float64{p.GetLatitude(), p.GetLongitude()}
}

// timestamp returns the zero time for an absent timestamp; the domain decides what that means.
func (d *decoder) timestamp(field string, ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	if err := ts.CheckValid(); err != nil {
		d.add(field, "is not a valid timestamp")
		return time.Time{}
	}
	return ts.AsTime()
}

// duration returns 0 for an absent duration; the domain applies its default.
func (d *decoder) duration(field string, du *durationpb.Duration) time.Duration {
	if du == nil {
		return 0
	}
	if err := du.CheckValid(); err != nil {
		d.add(field, "is not a valid duration")
		return 0
	}
	return du.AsDuration()
}

func (d *decoder) err() error {
	if len(d.violations) == 0 {
		return nil
	}
	return apperr.InvalidRequest(d.violations...)
}

func indexed(field string, i int) string { return fmt.Sprintf("%s[%d]", field, i) }

// decodeMode is the shared mode codec (geoproto.Mode): "" for UNSPECIFIED, which the domain reads as
// "any" or rejects, and an invalid mode for undefined values.
func decodeMode(m geov1.TransportMode) courier.Mode { return geoproto.Mode(m) }

var statuses = protoenum.New(map[courier.Status]courierv1.CourierStatus{
	courier.StatusOffline:   courierv1.CourierStatus_COURIER_STATUS_OFFLINE,
	courier.StatusAvailable: courierv1.CourierStatus_COURIER_STATUS_AVAILABLE,
	courier.StatusOnBreak:   courierv1.CourierStatus_COURIER_STATUS_ON_BREAK,
	courier.StatusBusy:      courierv1.CourierStatus_COURIER_STATUS_BUSY,
})

// decodeStatus returns "" for UNSPECIFIED and an invalid status for undefined values.
func decodeStatus(s courierv1.CourierStatus) courier.Status {
	return statuses.Decode(s)
}

func encodeStatus(s courier.Status) courierv1.CourierStatus {
	return statuses.Encode(s)
}

func encodeCourier(c courier.Courier) *courierv1.Courier {
	return &courierv1.Courier{
		Id:            c.ID,
		UserId:        c.UserID,
		DisplayName:   c.DisplayName,
		TransportMode: geoproto.ModeProto(c.Mode),
		Capacity:      int32(c.Capacity),
		Status:        encodeStatus(c.EffectiveStatus()),
		CreateTime:    timestamppb.New(c.CreatedAt),
		UpdateTime:    timestamppb.New(c.UpdatedAt),
		Etag:          c.Etag(),
	}
}

func encodeSlot(s courier.Slot) *courierv1.HourSlot {
	return &courierv1.HourSlot{StartTime: timestamppb.New(s.Start), Available: s.Available, AssignedTaskCount: int32(s.AssignedTasks)}
}

func encodeSlots(slots []courier.Slot) []*courierv1.HourSlot {
	out := make([]*courierv1.HourSlot, len(slots))
	for i, s := range slots {
		out[i] = encodeSlot(s)
	}
	return out
}

func encodeSnapshot(s courier.Snapshot) *courierv1.CourierSnapshot {
	out := &courierv1.CourierSnapshot{
		CourierId:       s.Courier.ID,
		TransportMode:   geoproto.ModeProto(s.Courier.Mode),
		Status:          encodeStatus(s.Status()),
		AvailableNow:    s.AvailableNow,
		ActiveTaskCount: int32(s.Courier.ActiveTasks),
		Capacity:        int32(s.Courier.Capacity),
		ActiveTaskIds:   slices.Clone(s.TaskIDs),
		DisplayName:     s.Courier.DisplayName,
	}
	if s.HasLocation {
		out.LastLocation = encodeFix(s.Location)
		out.LocationAge = durationpb.New(s.LocationAge)
	}
	return out
}

func encodeFix(f courier.LocationFix) *courierv1.LocationFix {
	out := &courierv1.LocationFix{
		Location:       &geov1.LatLng{Latitude: f.Lat, Longitude: f.Lng},
		RecordedAt:     timestamppb.New(f.RecordedAt),
		AccuracyMeters: f.AccuracyMeters,
	}
	if f.SpeedMPS >= 0 {
		out.Speed = &f.SpeedMPS
	}
	if f.Heading >= 0 {
		out.Heading = &f.Heading
	}
	return out
}

// decodeFix maps a missing location to NaN coordinates and a missing or malformed timestamp to the zero
// time, both of which the domain rejects as INVALID: a bad fix is counted, never fatal to the stream.
func decodeFix(f *courierv1.LocationFix) courier.Fix {
	out := courier.Fix{Lat: math.NaN(), Lng: math.NaN(), AccuracyMeters: f.GetAccuracyMeters()}
	if f == nil {
		return out
	}
	if l := f.GetLocation(); l != nil {
		out.Lat, out.Lng = l.GetLatitude(), l.GetLongitude()
	}
	if ts := f.GetRecordedAt(); ts != nil && ts.CheckValid() == nil {
		out.RecordedAt = ts.AsTime()
	}
	if f.Speed != nil {
		out.Speed, out.HasSpeed = *f.Speed, true
	}
	if f.Heading != nil {
		out.Heading, out.HasHeading = *f.Heading, true
	}
	return out
}

var rejectReasons = []struct {
	domain courier.RejectReason
	proto  courierv1.FixRejectionReason
}{
	{courier.RejectInvalid, courierv1.FixRejectionReason_FIX_REJECTION_REASON_INVALID},
	{courier.RejectFuture, courierv1.FixRejectionReason_FIX_REJECTION_REASON_FUTURE},
	{courier.RejectOutOfOrder, courierv1.FixRejectionReason_FIX_REJECTION_REASON_OUT_OF_ORDER},
	{courier.RejectStale, courierv1.FixRejectionReason_FIX_REJECTION_REASON_STALE},
	{courier.RejectImplausibleSpeed, courierv1.FixRejectionReason_FIX_REJECTION_REASON_IMPLAUSIBLE_SPEED},
	{courier.RejectRateLimited, courierv1.FixRejectionReason_FIX_REJECTION_REASON_RATE_LIMITED},
}

// encodeIngest lists rejections in the enum's order, so that responses are deterministic.
func encodeIngest(r courier.IngestResult) *courierv1.ReportLocationsResponse {
	out := &courierv1.ReportLocationsResponse{
		AcceptedCount: int32(r.Accepted),
		RejectedCount: int32(r.RejectedCount()),
	}
	for _, rr := range rejectReasons {
		if n := r.Rejected[rr.domain]; n > 0 {
			out.Rejections = append(out.Rejections, &courierv1.FixRejection{Reason: rr.proto, Count: int32(n)})
		}
	}
	return out
}

var changes = map[courier.Change]courierv1.CourierChange{
	courier.ChangeSnapshot:   courierv1.CourierChange_COURIER_CHANGE_SNAPSHOT,
	courier.ChangeLocation:   courierv1.CourierChange_COURIER_CHANGE_LOCATION,
	courier.ChangeStatus:     courierv1.CourierChange_COURIER_CHANGE_STATUS,
	courier.ChangeProfile:    courierv1.CourierChange_COURIER_CHANGE_PROFILE,
	courier.ChangeLeftBounds: courierv1.CourierChange_COURIER_CHANGE_LEFT_BOUNDS,
}

func encodeEvent(ev courier.Event) *courierv1.WatchCouriersResponse {
	out := &courierv1.WatchCouriersResponse{Courier: encodeSnapshot(ev.Snapshot), EventTime: timestamppb.New(ev.At)}
	for _, c := range ev.Changes {
		out.Changes = append(out.Changes, changes[c])
	}
	return out
}
