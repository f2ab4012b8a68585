package osrm

import (
	"encoding/json"
	"fmt"
	"math"
	"time"

	"lastmile/internal/route"
)

// maxSeconds bounds a duration from the server: far beyond any real trip, far below time.Duration's
// overflow at about 292 years.
const maxSeconds = 1e9

// routeResponse is the part of a route service answer the client reads.
type routeResponse struct {
	Code   string `json:"code"`
	Routes []struct {
		Distance float64 `json:"distance"`
		Duration float64 `json:"duration"`
	} `json:"routes"`
}

// decodeRoute returns the first (fastest) route of an answer, or found false if there is none.
func decodeRoute(body []byte) (meters float64, d time.Duration, found bool, err error) {
	var r routeResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return 0, 0, false, err
	}
	if r.Code != "Ok" {
		return 0, 0, false, fmt.Errorf("code %q, want Ok", r.Code)
	}
	if len(r.Routes) == 0 {
		return 0, 0, false, nil
	}
	first := r.Routes[0]
	if d, err = duration(first.Duration); err != nil {
		return 0, 0, false, err
	}
	if first.Distance < 0 {
		return 0, 0, false, fmt.Errorf("negative distance %v", first.Distance)
	}
	return first.Distance, d, true, nil
}

// tableResponse is the part of a table service answer the client reads. Null entries mark unreachable
// pairs, hence the pointers.
type tableResponse struct {
	Code      string       `json:"code"`
	Durations [][]*float64 `json:"durations"`
	Distances [][]*float64 `json:"distances"`
}

// decodeTable returns the n x m elements of a table answer in row-major order. A pair is found when both
// its duration and its distance are present.
func decodeTable(body []byte, n, m int) ([]route.MatrixElement, error) {
	var t tableResponse
	if err := json.Unmarshal(body, &t); err != nil {
		return nil, err
	}
	if t.Code != "Ok" {
		return nil, fmt.Errorf("code %q, want Ok", t.Code)
	}
	if err := checkShape("durations", t.Durations, n, m); err != nil {
		return nil, err
	}
	// Distances need OSRM 5.20 or later; an older server omits them, which checkShape reports.
	if err := checkShape("distances", t.Distances, n, m); err != nil {
		return nil, err
	}
	elems := make([]route.MatrixElement, 0, n*m)
	for i := range n {
		for j := range m {
			e := route.MatrixElement{OriginIndex: i, DestinationIndex: j}
			if dur, dist := t.Durations[i][j], t.Distances[i][j]; dur != nil && dist != nil {
				d, err := duration(*dur)
				if err != nil {
					return nil, fmt.Errorf("durations[%d][%d]: %w", i, j, err)
				}
				if *dist < 0 {
					return nil, fmt.Errorf("distances[%d][%d]: negative distance %v", i, j, *dist)
				}
				e.Found, e.DistanceMeters, e.Duration = true, *dist, d
			}
			elems = append(elems, e)
		}
	}
	return elems, nil
}

func checkShape(name string, rows [][]*float64, n, m int) error {
	if len(rows) != n {
		return fmt.Errorf("%s has %d rows, want %d", name, len(rows), n)
	}
	for i, row := range rows {
		if len(row) != m {
			return fmt.Errorf("%s[%d] has %d columns, want %d", name, i, len(row), m)
		}
	}
	return nil
}

// duration converts OSRM's seconds (tenths of a second precision) to whole seconds, like the geodesic
// provider.
func duration(seconds float64) (time.Duration, error) {
	if !(seconds >= 0 && seconds <= maxSeconds) {
		return 0, fmt.Errorf("duration %v s out of range", seconds)
	}
	return time.Duration(math.Round(seconds)) * time.Second, nil
}
