package gateway

import "time"

// SetStreamAgeTimer makes g's event streams start the timer of their age limit with start, which gets
// the stream's age limit (MaxEventStreamAge less its jitter) and returns the timer's channel and stop.
func SetStreamAgeTimer(g *Gateway, start func(time.Duration) (<-chan time.Time, func() bool)) {
	g.browser.ageTimer = start
}
