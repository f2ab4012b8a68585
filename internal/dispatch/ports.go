package dispatch

import (
	"context"
	"time"

	"lastmile/internal/geo"
	"lastmile/internal/platform/auth"
)

// CourierStatus is a courier's status as the courier service reports it.
type CourierStatus string

// The courier statuses dispatch sees.
const (
	CourierOffline   CourierStatus = "offline"
	CourierAvailable CourierStatus = "available"
	CourierOnBreak   CourierStatus = "on_break"
	CourierBusy      CourierStatus = "busy"
)

// Fix is a courier's last known position.
type Fix struct {
	Location geo.LatLng
	// Time is when the device took the fix.
	Time time.Time
	// Accuracy in meters, Speed in m/s, Heading in degrees; zero when unknown.
	Accuracy, Speed, Heading float64
}

// CourierInfo is a courier's live state as the courier service reports it.
type CourierInfo struct {
	ID           string
	DisplayName  string
	Mode         geo.TransportMode
	Status       CourierStatus
	AvailableNow bool
	// Fix is nil when the courier never reported a position.
	Fix *Fix
	// LocationAge is how old Fix was when the courier service answered.
	LocationAge time.Duration
	ActiveTasks int
	Capacity    int
	TaskIDs     []string
	// Distance is the great-circle distance from a nearby search's center, in meters.
	Distance float64
}

// NearbyQuery asks for available couriers near a point.
type NearbyQuery struct {
	Center  geo.LatLng
	Radius  float64
	Limit   int
	Modes   []geo.TransportMode
	Exclude []string
	MaxAge  time.Duration
}

// Couriers is what dispatch asks of the courier service. Its gRPC client implements it; errors are
// domain errors (NotFound, FailedPrecondition, Unavailable).
type Couriers interface {
	// FindNearby returns available couriers with free capacity near q.Center, nearest first.
	FindNearby(ctx context.Context, q NearbyQuery) ([]CourierInfo, error)
	// Status returns one courier's live state. NotFound when there is no such courier.
	Status(ctx context.Context, courierID string) (CourierInfo, error)
	// CourierOfUser returns the id of the courier profile of an identity user. NotFound when the user has
	// none.
	CourierOfUser(ctx context.Context, userID string) (string, error)
	// UserOfCourier returns the id of the identity user behind courier courierID (a courier profile is
	// linked to one user for good). NotFound when there is no such courier.
	UserOfCourier(ctx context.Context, courierID string) (string, error)
	// Claim reserves capacity on courierID for taskID, idempotently. FailedPrecondition when the courier
	// cannot take it (not available, full, or the task is claimed elsewhere). generation (0 for none)
	// orders the claim against the releases of taskID on courierID: superseded (nothing changed) when
	// a release of that generation or a higher one landed first (ClaimCourierRequest.generation).
	Claim(ctx context.Context, courierID, taskID string, expectedRelease time.Time, generation int64) (superseded bool, err error)
	// Release frees the capacity taskID holds on courierID, idempotently. With a generation (above 0) a
	// claim of a higher generation stays, and claims of that generation or lower that land later are
	// superseded.
	Release(ctx context.Context, courierID, taskID string, generation int64) error
}

// Accounts reads identity users' current standing (active or suspended or deleted, and roles). The
// process's *auth.Subjects implements it: the same cache the authenticator checks every call against,
// which the identity service keeps current on every replica.
type Accounts interface {
	// State returns the current standing of user userID; an unknown user is not Active. Unavailable when
	// it cannot be read.
	State(ctx context.Context, userID string) (auth.SubjectState, error)
}

// Leg is one origin's travel to a destination.
type Leg struct {
	Duration time.Duration
	Distance float64
	// Found is false when no route exists.
	Found bool
}

// Routes is what dispatch asks of the route service. Its gRPC client implements it.
type Routes interface {
	// Matrix returns the travel from each origin to dest by mode, in origin order, and the provider's name.
	// Unavailable when route cannot answer (the breaker is open or the call failed).
	Matrix(ctx context.Context, origins []geo.LatLng, dest geo.LatLng, mode geo.TransportMode, depart time.Time) ([]Leg, string, error)
}

// MatrixRoutes is a Routes that also answers many destinations at once; the work loop uses it, when the
// Routes has it, to ask for the pickup ETAs of a whole batch of tasks in one call per transport mode.
type MatrixRoutes interface {
	Routes
	// Matrices returns the travel from each origin to each destination by mode (legs[o][d], in the
	// order given) and the provider's name. Unavailable as Matrix.
	Matrices(ctx context.Context, origins, dests []geo.LatLng, mode geo.TransportMode, depart time.Time) ([][]Leg, string, error)
}
