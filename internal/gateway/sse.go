package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/grpc-ecosystem/grpc-gateway/v2/utilities"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	rpccode "google.golang.org/genproto/googleapis/rpc/code"
	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
)

// Event routes and the names of their events; /work/wt/notes/sse-format.md and the README describe them.
const (
	eventsPath      = "/v1/events"
	taskEventsRoute = "/v1/tasks/{id}/events"

	eventOpen             = "open"
	eventTask             = "task"
	eventSnapshotComplete = "snapshotComplete"
	eventCourier          = "courier"
	eventEnd              = "end"
	eventProblem          = "problem"

	// lastEventIDParam is the query form of Last-Event-ID, for clients that cannot set headers.
	lastEventIDParam = "lastEventId"
	// couriersParam turns on courier events on /v1/events; couriersPrefix names WatchCouriersRequest fields.
	couriersParam  = "couriers"
	couriersPrefix = "couriers."
	// maxEventID is the largest id accepted in Last-Event-ID: JavaScript numbers are exact up to 2^53.
	maxEventID = 1 << 53

	// resumeMargin is how far before the time in a Last-Event-ID a resumed /v1/events asks for the tasks
	// finished since (WatchTasksRequest.changed_since). The time is the latest update time among the task
	// events sent, but update times are taken by the replica that made the change, before its
	// transaction commits: a change can reach the feed after one with a later update time (a slower
	// transaction, another replica's clock a little behind), so the margin covers commit delays and
	// clock skew between replicas. Tasks inside the margin may come twice; the browser keys them by id.
	resumeMargin = 10 * time.Second
	// resumeWindow bounds how far back a resume asks: changed_since must be within 24 hours of the
	// dispatch service's clock; an hour less leaves room for skew between its clock and the gateway's.
	// A browser away longer gets the tasks finished in that window only.
	resumeWindow = 23 * time.Hour
	// resumeSkew bounds how far ahead of the gateway's clock the time of a Last-Event-ID may be (another
	// replica's clock ahead of this one); a later time, which no server sent, is brought back to it.
	resumeSkew = time.Hour
)

// streamAgeComment is the comment of the block that ends a stream at its age limit.
const streamAgeComment = "the stream reached its maximum age: reconnect with Last-Event-ID"

// event is one message for the browser, or the upstream's end (err, io.EOF for a clean end).
type event struct {
	name string
	msg  proto.Message
	err  error
}

// upstream is one gRPC server stream the event route reads.
type upstream struct {
	// service names the lastmile service the stream is from ("dispatch", "courier"): an error the
	// gateway's client produced for it names that service (unreachable).
	service string
	stream  grpc.ClientStream
	recv    func() (event, error)
	// headerAccepts: the service sends acceptedHeader when it accepts the call (see established).
	headerAccepts bool
}

// next reads u's next event; an error the gateway's client produced names u's service (unreachable).
func (u upstream) next() (event, error) {
	ev, err := u.recv()
	if err != nil {
		return ev, unreachable(u.service, err)
	}
	return ev, nil
}

// acceptedHeader is the response header metadata CourierService.WatchCouriers sends once it accepted a
// watch, before any event.
const acceptedHeader = "lastmile-watch"

// serveTaskEvents serves GET /v1/tasks/{id}/events from DispatchService.WatchTask.
func (b *browser) serveTaskEvents(w http.ResponseWriter, r *http.Request, id string) {
	values, lastID, _, ok := b.eventQuery(w, r)
	if !ok {
		return
	}
	if values.Has("id") {
		writeError(w, http.StatusBadRequest, codes.InvalidArgument, "the task id is in the path: remove the id query parameter", nil)
		return
	}
	req := &dispatchv1.WatchTaskRequest{}
	if !populate(w, req, values) {
		return
	}
	req.Id = id
	b.stream(w, r, eventIDs{next: lastID + 1}, "", func(ctx context.Context) ([]upstream, error) {
		s, err := b.dispatch.WatchTask(ctx, req)
		if err != nil {
			return nil, unreachable("dispatch", err)
		}
		return []upstream{{service: "dispatch", stream: s, recv: func() (event, error) {
			m, err := s.Recv()
			if errors.Is(err, io.EOF) {
				// WatchTask ends with OK once the task's final state was sent.
				return event{name: eventEnd}, nil
			}
			return event{name: eventTask, msg: m}, err
		}}}, nil
	}, "/lastmile.dispatch.v1.DispatchService/WatchTask", taskEventsRoute)
}

// serveEvents serves GET /v1/events from DispatchService.WatchTasks and, with couriers=true or a
// couriers.* parameter, CourierService.WatchCouriers.
func (b *browser) serveEvents(w http.ResponseWriter, r *http.Request) {
	values, lastID, lastTime, ok := b.eventQuery(w, r)
	if !ok {
		return
	}
	tasksValues, courierValues := url.Values{}, url.Values{}
	withCouriers := false
	for k, vs := range values {
		switch {
		case k == couriersParam:
			if len(vs) != 1 || (vs[0] != "true" && vs[0] != "false") {
				writeError(w, http.StatusBadRequest, codes.InvalidArgument, "couriers must be true or false", nil)
				return
			}
			withCouriers = withCouriers || vs[0] == "true"
		case strings.HasPrefix(k, couriersPrefix):
			courierValues[strings.TrimPrefix(k, couriersPrefix)] = vs
			withCouriers = true
		default:
			tasksValues[k] = vs
		}
	}
	tasksReq := &dispatchv1.WatchTasksRequest{}
	if !populate(w, tasksReq, tasksValues) {
		return
	}
	couriersReq := &courierv1.WatchCouriersRequest{}
	if !populate(w, couriersReq, courierValues) {
		return
	}
	if withCouriers && b.couriers == nil {
		writeError(w, http.StatusServiceUnavailable, codes.Unavailable, "courier events are not available: the courier service is not configured", nil)
		return
	}
	// The ids carry a time from which a resume loses no finished task (see eventWriter): the stream's
	// start, or the time of the id it resumes after.
	ids := eventIDs{next: lastID + 1, stamped: true, stamp: b.cfg.Now()}
	if !lastTime.IsZero() {
		ids.stamp = lastTime
		if floor := b.cfg.Now().Add(-resumeWindow); lastTime.Before(floor) {
			ids.stamp = floor
		}
		if ceiling := b.cfg.Now().Add(resumeSkew); lastTime.After(ceiling) {
			ids.stamp = ceiling // a forged id: at most the skew ahead, which dispatch's window accepts
		}
		tasksReq.ChangedSince = timestamppb.New(ids.stamp.Add(-resumeMargin))
	}
	open := fmt.Sprintf(`{"resumed":%t}`, lastID >= 0)
	b.stream(w, r, ids, open, func(ctx context.Context) ([]upstream, error) {
		tasks, err := b.dispatch.WatchTasks(ctx, tasksReq)
		if err != nil {
			return nil, unreachable("dispatch", err)
		}
		ups := []upstream{{service: "dispatch", stream: tasks, recv: func() (event, error) {
			m, err := tasks.Recv()
			if err != nil {
				return event{}, err
			}
			if t := m.GetTask(); t != nil {
				return event{name: eventTask, msg: t}, nil
			}
			return event{name: eventSnapshotComplete, msg: m.GetSnapshotComplete()}, nil
		}}}
		if withCouriers {
			cs, err := b.couriers.WatchCouriers(ctx, couriersReq)
			if err != nil {
				return nil, unreachable("courier", err)
			}
			ups = append(ups, upstream{service: "courier", stream: cs, headerAccepts: true, recv: func() (event, error) {
				m, err := cs.Recv()
				return event{name: eventCourier, msg: m}, err
			}})
		}
		return ups, nil
	}, "/lastmile.dispatch.v1.DispatchService/WatchTasks", eventsPath)
}

// eventQuery returns the query parameters without the Last-Event-ID one, the id to resume after (-1
// without one) and the time it carries (zero when it has none: the ids of /v1/task/{id}/events, and those
// of /v1/events before times were added to them). It answers 400 itself for a malformed id or query.
//
// An id is the event's number, on /v1/events followed by a dot and a time in Unix milliseconds
// ("42.1764541234567"); clients treat ids as opaque and only hand the last one back.
func (b *browser) eventQuery(w http.ResponseWriter, r *http.Request) (url.Values, int64, time.Time, bool) {
	values, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		writeError(w, http.StatusBadRequest, codes.InvalidArgument, "the query string is malformed", nil)
		return nil, 0, time.Time{}, false
	}
	raw := r.Header.Get("Last-Event-ID")
	if q := values.Get(lastEventIDParam); raw == "" && q != "" {
		raw = q
	}
	values.Del(lastEventIDParam)
	if raw == "" {
		return values, -1, time.Time{}, true
	}
	number, stamp, stamped := strings.Cut(raw, ".")
	id, err := strconv.ParseInt(number, 10, 64)
	ok := err == nil && id >= 0 && id <= maxEventID
	var at time.Time
	if ok && stamped {
		ms, err := strconv.ParseInt(stamp, 10, 64)
		ok = err == nil && ms > 0 && ms <= maxEventID
		at = time.UnixMilli(ms)
	}
	if !ok {
		writeError(w, http.StatusBadRequest, codes.InvalidArgument, "Last-Event-ID must be an event id this server sent", nil)
		return nil, 0, time.Time{}, false
	}
	return values, id, at, true
}

// populate fills m from query parameters the way grpc-gateway fills the REST routes' requests (by JSON or
// proto field name, dotted paths into nested messages, repeated parameters for lists), so fields added to
// the request later work without gateway changes. Unknown parameters are an error.
func populate(w http.ResponseWriter, m proto.Message, values url.Values) bool {
	for k := range values {
		if !knownField(m.ProtoReflect().Descriptor(), k) {
			writeError(w, http.StatusBadRequest, codes.InvalidArgument, fmt.Sprintf("unknown query parameter %q", k), nil)
			return false
		}
	}
	if err := runtime.PopulateQueryParameters(m, values, noFilter); err != nil {
		writeError(w, http.StatusBadRequest, codes.InvalidArgument, "invalid query parameter: "+err.Error(), nil)
		return false
	}
	return true
}

// noFilter excludes no query parameter from PopulateQueryParameters.
var noFilter = utilities.NewDoubleArray(nil)

// knownField reports whether path (a.b.c, by JSON or proto names) names a field of md.
func knownField(md protoreflect.MessageDescriptor, path string) bool {
	parts := strings.Split(path, ".")
	for i, p := range parts {
		fd := md.Fields().ByName(protoreflect.Name(p))
		if fd == nil {
			fd = md.Fields().ByJSONName(p)
		}
		if fd == nil {
			return false
		}
		if i < len(parts)-1 {
			if fd.Message() == nil || fd.IsList() || fd.IsMap() {
				return false
			}
			md = fd.Message()
		}
	}
	return true
}

// stream runs one event stream: it opens the upstreams with the caller's forwarded identity, answers
// errors they report before their first message with the REST status, then relays their messages as
// events until the browser goes away, an upstream ends, a write stalls, the stream reaches its age limit
// (streamAge), or the gateway shuts down. Every way out cancels the upstream calls and waits for the
// goroutines reading them.
func (b *browser) stream(w http.ResponseWriter, r *http.Request, ids eventIDs, open string,
	dial func(context.Context) ([]upstream, error), rpc, route string) {
	if !b.acquire("") {
		writeError(w, http.StatusTooManyRequests, codes.ResourceExhausted, "too many event streams are open; retry later", nil)
		return
	}
	defer b.release("")

	ctx, err := runtime.AnnotateContext(r.Context(), b.g.mux, r, rpc, runtime.WithHTTPPathPattern(route))
	if err != nil {
		b.g.handleError(r.Context(), b.g.mux, nil, w, r, status.Error(codes.InvalidArgument, err.Error()))
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The upstreams have RequestTimeout to accept the call, like any REST call; the stream itself has none.
	timer := time.AfterFunc(b.g.cfg.RequestTimeout, cancel)
	ups, err := dial(ctx)
	var first []event
	if err == nil {
		first, err = established(ups)
	}
	if !timer.Stop() && err != nil {
		err = status.Error(codes.DeadlineExceeded, "the service did not accept the event stream in time")
	}
	if err != nil {
		b.g.handleError(ctx, b.g.mux, nil, w, r, err)
		return
	}
	if !isStaff(r) && !b.roomForNonStaff() {
		writeError(w, http.StatusTooManyRequests, codes.ResourceExhausted, "too many event streams are open; retry later", nil)
		return
	}
	user := userKey(r)
	if !b.acquire(user) {
		writeError(w, http.StatusTooManyRequests, codes.ResourceExhausted, "too many event streams are open for this user; close some", nil)
		return
	}
	defer b.release(user)

	events := make(chan event)
	var wg sync.WaitGroup
	for _, u := range ups {
		wg.Go(func() {
			for {
				ev, err := u.next()
				if err != nil {
					ev = event{err: err}
				}
				select {
				case events <- ev:
				case <-ctx.Done():
					return
				}
				if ev.err != nil || ev.name == eventEnd {
					return
				}
			}
		})
	}
	// Cancelling first ends the upstream calls, which ends the readers' Recv calls.
	defer wg.Wait()
	defer cancel()

	sw, err := b.newEventWriter(w, ids)
	if err != nil {
		b.g.log.LogAttrs(ctx, slog.LevelError, "gateway: event stream refused", slog.String("route", route), slog.String("error", err.Error()))
		writeError(w, http.StatusInternalServerError, codes.Internal, "internal error", nil)
		return
	}
	if err := sw.start(b.cfg.Retry, open); err != nil {
		return
	}
	for _, ev := range first {
		if sw.send(ev.name, ev.msg) != nil || ev.name == eventEnd {
			return
		}
	}
	heartbeat := time.NewTicker(b.cfg.Heartbeat)
	defer heartbeat.Stop()
	aged, stopAge := b.ageTimer(b.streamAge())
	defer stopAge()
	for {
		select {
		case <-aged:
			// A browser that reads reconnects after retry with Last-Event-ID and loses nothing; one that
			// stopped reading no longer holds the slots (a quiet stream never fills its socket buffers,
			// so no write would time out).
			_ = sw.end(b.cfg.Retry)
			return
		case <-ctx.Done():
			return // the browser went away
		case <-b.stopping:
			return // the gateway is shutting down; the browser reconnects elsewhere
		case <-heartbeat.C:
			if sw.comment("heartbeat") != nil {
				return
			}
		case ev := <-events:
			if ev.err != nil {
				// A feed that ends cleanly (none should) just closes: the browser reconnects.
				if ctx.Err() == nil && !errors.Is(ev.err, io.EOF) {
					_ = sw.problem(b.g, ctx, ev.err)
				}
				return
			}
			if sw.send(ev.name, ev.msg) != nil || ev.name == eventEnd {
				return
			}
		}
	}
}

// streamAge is how long one event stream may last: MaxEventStreamAge less a random 0-10 %, so that the
// streams of a dashboard reloaded everywhere at once (or of a gateway restart) do not all reconnect at
// the same moment again.
func (b *browser) streamAge() time.Duration {
	age := b.cfg.MaxEventStreamAge
	return age - rand.N(age/10+1)
}

// established waits until every upstream has accepted the call, so that a refused call (authentication,
// authorization, validation, a task the caller may not see) is answered with its REST status instead of an
// event stream. The dispatch streams always open with a message (their snapshot), which it reads and keeps
// for the stream; WatchCouriers may stay silent while no courier matches, so it says it accepted the call
// with the acceptedHeader metadata instead.
func established(ups []upstream) ([]event, error) {
	var first []event
	for _, u := range ups {
		if u.headerAccepts {
			md, err := u.stream.Header()
			if err == nil && len(md.Get(acceptedHeader)) == 1 {
				continue
			}
		}
		ev, err := u.next()
		if err != nil {
			return nil, err
		}
		if u.headerAccepts {
			return nil, status.Error(codes.Unknown, "the courier stream did not say it accepted the call")
		}
		first = append(first, ev)
	}
	return first, nil
}

// acquire takes a slot of the total stream limit (user "") or of user's limit.
func (b *browser) acquire(user string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if user == "" {
		if b.open >= b.cfg.MaxEventStreams {
			return false
		}
		b.open++
		return true
	}
	if b.perUser[user] >= b.cfg.MaxEventStreamsPerUser {
		return false
	}
	b.perUser[user]++
	return true
}

// roomForNonStaff reports whether the streams open (this one's slot of the total taken) leave the staff's
// reserve free: a stream of someone who is neither a dispatcher nor an admin may not take it.
func (b *browser) roomForNonStaff() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.open <= b.cfg.MaxEventStreams-b.cfg.staffReserve()
}

func (b *browser) release(user string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if user == "" {
		b.open--
		return
	}
	if b.perUser[user]--; b.perUser[user] <= 0 {
		delete(b.perUser, user)
	}
}

// eventIDs numbers a stream's events. On /v1/events (stamped) each id also carries a time, stamp, from
// which a resume loses nothing: every task that changed at or after it and finished since is in the
// resumed snapshot (changed_since, minus resumeMargin), and every change before it was sent by the time
// of the event. It starts at the stream's start (or the resumed id's time); the snapshot's task times
// raise it only once the whole snapshot was sent (snapshotComplete), since a browser that got half a
// snapshot does not hold the finished tasks of its end; after that each task event raises it to the
// task's update time.
type eventIDs struct {
	next    int64
	stamped bool
	stamp   time.Time
	// live is set after snapshotComplete; pending is the latest task time of the snapshot until then.
	live    bool
	pending time.Time
}

// see advances the stamp for the event name with msg, before its id is written.
func (ids *eventIDs) see(name string, msg proto.Message) {
	if !ids.stamped {
		return
	}
	if name == eventSnapshotComplete {
		ids.live = true
		ids.stamp = later(ids.stamp, ids.pending)
		return
	}
	t, ok := msg.(*dispatchv1.Task)
	if !ok || t.GetUpdateTime() == nil {
		return
	}
	if ids.live {
		ids.stamp = later(ids.stamp, t.GetUpdateTime().AsTime())
	} else {
		ids.pending = later(ids.pending, t.GetUpdateTime().AsTime())
	}
}

// id returns the next event's id and counts it.
func (ids *eventIDs) id() string {
	n := ids.next
	ids.next++
	if !ids.stamped {
		return strconv.FormatInt(n, 10)
	}
	return strconv.FormatInt(n, 10) + "." + strconv.FormatInt(ids.stamp.UnixMilli(), 10)
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// eventWriter writes the text/event-stream framing, flushing every event and bounding every write.
type eventWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	ids     eventIDs
	buf     bytes.Buffer
}

func (b *browser) newEventWriter(w http.ResponseWriter, ids eventIDs) (*eventWriter, error) {
	rc := http.NewResponseController(w)
	// The server's ReadTimeout and WriteTimeout bound ordinary requests, not a stream that runs for hours:
	// the request was read long ago, so no read deadline (net/http lifts it itself for HTTP/1.1, not for
	// every transport), and each write gets its own deadline instead (flush).
	if err := rc.SetReadDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return nil, fmt.Errorf("clear read deadline: %w", err)
	}
	// Without per-write deadlines a stalled browser would pin the stream, or the server's WriteTimeout
	// would cut every stream: a response writer in between that hides the server's (no Unwrap) is a bug.
	if err := rc.SetWriteDeadline(time.Now().Add(b.cfg.EventWriteTimeout)); err != nil {
		return nil, fmt.Errorf("set write deadline: %w", err)
	}
	return &eventWriter{w: w, rc: rc, timeout: b.cfg.EventWriteTimeout, ids: ids}, nil
}

func (s *eventWriter) start(retry time.Duration, open string) error {
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	s.w.WriteHeader(http.StatusOK)
	fmt.Fprintf(&s.buf, "retry: %d\n\n", retry.Milliseconds())
	if open != "" {
		s.frame(eventOpen, []byte(open))
	}
	return s.flush()
}

// end writes the last block of a stream that the server ends on purpose, for the browser to reconnect:
// the retry hint again and a comment saying why.
func (s *eventWriter) end(retry time.Duration) error {
	fmt.Fprintf(&s.buf, "retry: %d\n: %s\n\n", retry.Milliseconds(), streamAgeComment)
	return s.flush()
}

func (s *eventWriter) comment(text string) error {
	fmt.Fprintf(&s.buf, ": %s\n\n", text)
	return s.flush()
}

func (s *eventWriter) send(name string, msg proto.Message) error {
	data := []byte("{}")
	if msg != nil && msg.ProtoReflect().IsValid() {
		var err error
		if data, err = jsonOut.Marshal(msg); err != nil {
			return fmt.Errorf("marshal %s event: %w", name, err)
		}
	}
	s.ids.see(name, msg)
	s.frame(name, data)
	return s.flush()
}

// problem sends the error an upstream ended with as a problem event, in the REST error shape.
func (s *eventWriter) problem(g *Gateway, ctx context.Context, err error) error {
	st := status.Convert(err)
	message := st.Message()
	if fault, ok := serverFaults[st.Code()]; ok {
		g.log.LogAttrs(ctx, fault.level, "gateway: event stream failed", slog.String("code", st.Code().String()), slog.String("error", st.Message()))
		message = faultMessage("", st, fault.message)
	}
	httpStatus := runtime.HTTPStatusFromCode(st.Code())
	data, jerr := json.Marshal(errorBody{Error: errorStatus{Code: httpStatus, Status: rpccode.Code(st.Code()).String(), Message: message}})
	if jerr != nil {
		return fmt.Errorf("marshal problem event: %w", jerr)
	}
	s.frame(eventProblem, data)
	return s.flush()
}

// frame appends one event; data is one line of JSON.
func (s *eventWriter) frame(name string, data []byte) {
	fmt.Fprintf(&s.buf, "id: %s\nevent: %s\ndata: %s\n\n", s.ids.id(), name, data)
}

// flush writes the buffered bytes within the write timeout and pushes them to the browser.
func (s *eventWriter) flush() error {
	if err := s.rc.SetWriteDeadline(time.Now().Add(s.timeout)); err != nil {
		return fmt.Errorf("set write deadline: %w", err)
	}
	_, err := s.w.Write(s.buf.Bytes())
	s.buf.Reset()
	if err != nil {
		return fmt.Errorf("write event: %w", err)
	}
	if err := s.rc.Flush(); err != nil {
		return fmt.Errorf("flush event: %w", err)
	}
	return nil
}
