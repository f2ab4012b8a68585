package geo

// TransportMode is how a courier travels. Its value is the mode's lowercase name, the form stores keep
// and logs print. The zero value, ModeUnspecified, is not a mode: a request leaves it to mean "any" or
// "missing", as the domain decides.
type TransportMode string

// The transport modes, in the order of lastmile.geo.v1.TransportMode. Adapters map them by name through
// package geoproto, never by number.
const (
	// ModeUnspecified is the zero TransportMode.
	ModeUnspecified TransportMode = ""
	// Bicycle is a pedal or electric bicycle.
	Bicycle TransportMode = "bicycle"
	// Scooter is a motor scooter or moped.
	Scooter TransportMode = "scooter"
	// Car is a passenger car.
	Car TransportMode = "car"
	// Van is a van or light truck.
	Van TransportMode = "van"
	// Walking is on foot.
	Walking TransportMode = "walking"
)

// Modes lists every valid TransportMode, in the order of the API's enum. Read-only.
var Modes = []TransportMode{Bicycle, Scooter, Car, Van, Walking}

// Valid reports whether m is one of the defined modes (not ModeUnspecified, not an unknown name).
func (m TransportMode) Valid() bool {
	switch m {
	case Bicycle, Scooter, Car, Van, Walking:
		return true
	}
	return false
}

// Motorized reports whether m moves in motor traffic and is therefore slowed by congestion.
func (m TransportMode) Motorized() bool { return m == Scooter || m == Car || m == Van }

// String returns the mode's name, such as "bicycle", and "unspecified" for ModeUnspecified. An unknown
// mode prints as its raw value, so that an error naming it shows what was sent.
func (m TransportMode) String() string {
	if m == ModeUnspecified {
		return "unspecified"
	}
	return string(m)
}
