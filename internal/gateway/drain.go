package gateway

import (
	"maps"
	"net"
	"net/http"
	"sync"
)

// drain is what the gateway knows about its connections and requests while it stops.
//
// http.Server.Shutdown closes idle connections at once but treats a connection that has not sent a
// request yet (http.StateNew) as busy until it is five seconds old, because a request may be on its way.
// Clients open such connections all the time: Go's http.Transport, for one, dials a spare connection
// while another is busy and parks it unused. A stop would then wait five seconds for nothing, or run
// out of its --shutdown-timeout. Once Shutdown has closed the listener, drain closes every connection
// that has not started a request; a client whose request was about to go out on one retries it, as it
// does for an idle keep-alive connection that a server closes.
type drain struct {
	mu       sync.Mutex
	fresh    map[net.Conn]struct{}
	stopping bool
	// open counts the requests being served, by "METHOD path", for the log of a stop that runs out of
	// time.
	open map[string]int
}

func newDrain() *drain {
	return &drain{fresh: map[net.Conn]struct{}{}, open: map[string]int{}}
}

// connState is the http.Server's ConnState hook.
func (d *drain) connState(c net.Conn, st http.ConnState) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if st == http.StateNew && d.stopping {
		c.Close()
		return
	}
	if st == http.StateNew {
		d.fresh[c] = struct{}{}
	} else {
		delete(d.fresh, c)
	}
}

// stop closes every connection that has not started a request and those that connect from now on (the
// listener is closed already, but a connection it accepted just before may still report StateNew).
func (d *drain) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stopping = true
	for c := range d.fresh {
		c.Close()
		delete(d.fresh, c)
	}
}

// begin records a request being served; the returned function records its end.
func (d *drain) begin(r *http.Request) (end func()) {
	key := r.Method + " " + r.URL.Path
	d.mu.Lock()
	d.open[key]++
	d.mu.Unlock()
	return func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.open[key]--; d.open[key] <= 0 {
			delete(d.open, key)
		}
	}
}

// openRequests returns the requests being served, by "METHOD path".
func (d *drain) openRequests() map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return maps.Clone(d.open)
}
