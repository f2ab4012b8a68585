package grpcapi

import (
	"fmt"
	"math"
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
	return &encodeSnapshots(1, func(int) *courier.Snapshot { return &s })[0]
}

// encodeSnapshots returns the API messages of n snapshots, snap(i) for i from 0. A search answers up to
// 100 couriers, each a snapshot of six messages (the snapshot, its fix, point, fix time and location age,
// speed and heading) and a list of task ids: they are allocated in one array per kind, not one by one.
func encodeSnapshots(n int, snap func(i int) *courier.Snapshot) []courierv1.CourierSnapshot {
	var (
		out    = make([]courierv1.CourierSnapshot, n)
		fixes  []courierv1.LocationFix
		points []geov1.LatLng
		times  []timestamppb.Timestamp
		ages   []durationpb.Duration
		floats []float64
		ids    []string
	)
	located, tasks := 0, 0
	for i := range n {
		s := snap(i)
		tasks += len(s.TaskIDs)
		if s.HasLocation {
			located++
		}
	}
	if located > 0 {
		fixes = make([]courierv1.LocationFix, 0, located)
		points = make([]geov1.LatLng, 0, located)
		times = make([]timestamppb.Timestamp, 0, located)
		ages = make([]durationpb.Duration, 0, located)
		floats = make([]float64, 0, 2*located)
	}
	if tasks > 0 {
		ids = make([]string, 0, tasks)
	}
	for i := range n {
		s, o := snap(i), &out[i]
		o.CourierId = s.Courier.ID
		o.TransportMode = geoproto.ModeProto(s.Courier.Mode)
		o.Status = encodeStatus(s.Status())
		o.AvailableNow = s.AvailableNow
		o.ActiveTaskCount = int32(s.Courier.ActiveTasks)
		o.Capacity = int32(s.Courier.Capacity)
		o.DisplayName = s.Courier.DisplayName
		if len(s.TaskIDs) > 0 {
			from := len(ids)
			ids = append(ids, s.TaskIDs...)
			o.ActiveTaskIds = ids[from:len(ids):len(ids)]
		}
		if !s.HasLocation {
			continue
		}
		f := &s.Location
		points = append(points, geov1.LatLng{Latitude: f.Lat, Longitude: f.Lng})
		times = append(times, timestamppb.Timestamp{Seconds: f.RecordedAt.Unix(), Nanos: int32(f.RecordedAt.Nanosecond())})
		fixes = append(fixes, courierv1.LocationFix{
			Location:       &points[len(points)-1],
			RecordedAt:     &times[len(times)-1],
			AccuracyMeters: f.AccuracyMeters,
		})
		fix := &fixes[len(fixes)-1]
		if f.SpeedMPS >= 0 {
			floats = append(floats, f.SpeedMPS)
			fix.Speed = &floats[len(floats)-1]
		}
		if f.Heading >= 0 {
			floats = append(floats, f.Heading)
			fix.Heading = &floats[len(floats)-1]
		}
		o.LastLocation = fix
		age := s.LocationAge.Nanoseconds() // durationpb.New's arithmetic
		ages = append(ages, durationpb.Duration{Seconds: age / 1e9, Nanos: int32(age % 1e9)})
		o.LocationAge = &ages[len(ages)-1]
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
