package eventlog

import "time"

// SetTimer replaces the timers the tailer waits on (poll and backoff), so tests can see each wait it
// asks for and end it when they choose. Call it before Run.
func SetTimer(l *Log, timer func(d time.Duration) (<-chan time.Time, func())) {
	l.timer = timer
}
