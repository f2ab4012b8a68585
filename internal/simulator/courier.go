package simulator

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
	geov1 "lastmile/gen/go/lastmile/geo/v1"
	routev1 "lastmile/gen/go/lastmile/route/v1"
)

// Timing of a courier bot.
const (
	// idleFixInterval is how often an idle courier reports its (unchanged) position, so that dispatch,
	// which only considers fresh positions, keeps considering it.
	idleFixInterval = 20 * time.Second
	// locationStreamLifetime is how long one ReportLocations stream is kept before it is closed (the
	// server answers with its counts) and a new one is opened with a fresh token.
	locationStreamLifetime = 5 * time.Minute
	// commandTimeout bounds one session command, resends after reconnects included.
	commandTimeout = 30 * time.Second
	// closeGrace is how long a stream may take to end after the bot half-closed it at the end of the run.
	closeGrace = 3 * time.Second
	// maxQueued bounds the deliveries waiting for a courier's worker; beyond it deliveries are dropped
	// (their offers expire and go to another courier).
	maxQueued = 256
)

// modeSpeedCap is the highest straight-line speed in m/s a bot moves at by mode, safely below what the
// courier service accepts as plausible, so that a sped-up simulation is not refused as teleporting.
func modeSpeedCap(m geov1.TransportMode) float64 {
	switch m {
	case geov1.TransportMode_TRANSPORT_MODE_WALKING:
		return 3.2
	case geov1.TransportMode_TRANSPORT_MODE_BICYCLE:
		return 12
	case geov1.TransportMode_TRANSPORT_MODE_SCOOTER:
		return 24
	default:
		return 45
	}
}

// modeSpeed is the average urban speed in m/s by mode when route cannot be asked.
func modeSpeed(m geov1.TransportMode) float64 {
	switch m {
	case geov1.TransportMode_TRANSPORT_MODE_WALKING:
		return 5 / 3.6
	case geov1.TransportMode_TRANSPORT_MODE_BICYCLE:
		return 15 / 3.6
	case geov1.TransportMode_TRANSPORT_MODE_SCOOTER:
		return 25 / 3.6
	default:
		return 28 / 3.6
	}
}

// courierBot is one simulated courier app.
type courierBot struct {
	sim  *run
	c    *clients // the connection this bot uses
	acct *account
	id   string
	mode geov1.TransportMode
	rng  *rand.Rand // the worker's; other goroutines use none

	posMu    sync.Mutex
	pos      Point
	moving   bool
	speed    float64
	heading  float64
	lastSent time.Time

	queue eventQueue

	sessMu  sync.Mutex
	sess    *liveSession
	changed chan struct{} // closed when sess changes
	cursor  int64         // the highest delivery cursor received
	epoch   int64

	pendMu  sync.Mutex
	pending map[string]chan *dispatchv1.CommandResult
	// cmdPrefix and cmdSeq make the bot's command ids: "sim-<random>-1", "-2", …. The random part keeps a
	// later bot of the same courier (a restarted demo's, delivering what an earlier run's bot picked up)
	// off the ids the earlier one used, which the server remembers per courier (COMMAND_ID_REUSED).
	cmdPrefix string
	cmdSeq    atomic.Int64

	// current is the task the worker carries, "" when idle; seen holds the offers already answered and
	// finished the tasks already carried (both bounded: cleared beyond a thousand).
	current  string
	seen     map[string]bool
	finished map[string]bool
}

func newCourierBot(sim *run, c *clients, acct *account, id string, mode geov1.TransportMode, start Point, seed uint64) *courierBot {
	return &courierBot{
		sim: sim, c: c, acct: acct, id: id, mode: mode, pos: start,
		rng:     rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		changed: make(chan struct{}),
		pending: map[string]chan *dispatchv1.CommandResult{}, cmdPrefix: "sim-" + strings.ToLower(crand.Text()[:10]) + "-",
		seen: map[string]bool{}, finished: map[string]bool{},
		queue: eventQueue{notify: make(chan struct{}, 1)},
	}
}

// run logs the courier in, makes it available for the run and AVAILABLE, and runs its session, its
// location reports and its work until ctx ends; then it goes OFFLINE.
func (b *courierBot) run(ctx context.Context) {
	if !b.retry(ctx, "log in", b.acct.login) || !b.retry(ctx, "go available", b.goAvailable) {
		return
	}
	b.sim.courierReady()
	var wg sync.WaitGroup
	wg.Go(func() { b.sessionLoop(ctx) })
	wg.Go(func() { b.reportLoop(ctx) })
	b.work(ctx)
	wg.Wait()
	// Best effort, after the run: a courier that stops working goes OFFLINE.
	octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	_, _ = call(octx, b.acct, func(c context.Context) (*courierv1.CourierSnapshot, error) {
		return b.c.couriers.SetStatus(c, &courierv1.SetStatusRequest{CourierId: b.id, Status: courierv1.CourierStatus_COURIER_STATUS_OFFLINE})
	})
}

// retry runs f until it succeeds or ctx ends, backing off between attempts; it reports success.
func (b *courierBot) retry(ctx context.Context, what string, f func(context.Context) error) bool {
	for n := 0; ; n++ {
		err := f(ctx)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		b.sim.failed("courier "+what, err)
		if !sleep(ctx, backoff(n, b.sim.jitter())) {
			return false
		}
	}
}

// goAvailable marks the hours of the run available and sets the status AVAILABLE.
func (b *courierBot) goAvailable(ctx context.Context) error {
	now := time.Now().Truncate(time.Hour)
	hours := make([]*timestamppb.Timestamp, 0, b.sim.hours)
	for i := range b.sim.hours {
		hours = append(hours, timestamppb.New(now.Add(time.Duration(i)*time.Hour)))
	}
	if _, err := call(ctx, b.acct, func(c context.Context) (*courierv1.SetAvailabilityResponse, error) {
		return b.c.couriers.SetAvailability(c, &courierv1.SetAvailabilityRequest{CourierId: b.id, Hours: hours, Available: true})
	}); err != nil {
		return fmt.Errorf("set availability: %w", err)
	}
	if _, err := call(ctx, b.acct, func(c context.Context) (*courierv1.CourierSnapshot, error) {
		return b.c.couriers.SetStatus(c, &courierv1.SetStatusRequest{CourierId: b.id, Status: courierv1.CourierStatus_COURIER_STATUS_AVAILABLE})
	}); err != nil {
		return fmt.Errorf("set status AVAILABLE: %w", err)
	}
	return nil
}

// position returns where the courier is.
func (b *courierBot) position() Point {
	b.posMu.Lock()
	defer b.posMu.Unlock()
	return b.pos
}

func (b *courierBot) setPosition(p Point, moving bool, speed, heading float64) {
	b.posMu.Lock()
	defer b.posMu.Unlock()
	b.pos, b.moving, b.speed, b.heading = p, moving, speed, heading
}

// reportLoop streams the courier's position over ReportLocations: every fix interval while it moves,
// every idleFixInterval while it stands. A broken stream is opened again after a back-off.
func (b *courierBot) reportLoop(ctx context.Context) {
	for n := 0; ctx.Err() == nil; {
		sent, err := b.reportStream(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			b.sim.failed("location stream", err)
			b.sim.stats.Reconnects.Add(1)
		}
		if sent > 0 {
			n = 0
		}
		if err != nil && !sleep(ctx, backoff(n, b.sim.jitter())) {
			return
		}
		n++
	}
}

// reportStream runs one ReportLocations stream for at most locationStreamLifetime; it returns the fixes
// sent and the stream's error.
func (b *courierBot) reportStream(ctx context.Context) (int, error) {
	// The stream outlives ctx by a moment: when the run ends it is closed as an app closes it (the server
	// answers with its counts) rather than cut off.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	actx, err := b.acct.authed(sctx)
	if err != nil {
		return 0, err
	}
	stream, err := b.c.couriers.ReportLocations(actx)
	if err != nil {
		return 0, fmt.Errorf("open ReportLocations: %w", err)
	}
	tick := time.NewTicker(b.sim.cfg.FixInterval)
	defer tick.Stop()
	end := time.NewTimer(locationStreamLifetime)
	defer end.Stop()
	sent := 0
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				stop := time.AfterFunc(closeGrace, cancel)
				defer stop.Stop()
				_, _ = stream.CloseAndRecv()
				return sent, nil
			case <-end.C:
				resp, err := stream.CloseAndRecv()
				if err != nil {
					return sent, fmt.Errorf("close ReportLocations: %w", err)
				}
				b.sim.stats.FixesRejected.Add(int64(resp.GetRejectedCount()))
				return sent, nil
			case <-tick.C:
			}
		}
		b.posMu.Lock()
		p, moving, speed, heading, last := b.pos, b.moving, b.speed, b.heading, b.lastSent
		due := moving || first || time.Since(last) >= idleFixInterval
		if due {
			b.lastSent = time.Now()
		}
		b.posMu.Unlock()
		if !due {
			continue
		}
		fix := &courierv1.LocationFix{
			Location:       &geov1.LatLng{Latitude: p.Lat, Longitude: p.Lng},
			RecordedAt:     timestamppb.Now(),
			AccuracyMeters: 5,
		}
		if moving {
			fix.Speed, fix.Heading = &speed, &heading
		} else {
			zero := 0.0
			fix.Speed = &zero
		}
		if err := stream.Send(&courierv1.ReportLocationsRequest{CourierId: b.id, Fixes: []*courierv1.LocationFix{fix}}); err != nil {
			_, rerr := stream.CloseAndRecv()
			return sent, fmt.Errorf("send location: %w", errors.Join(err, rerr))
		}
		sent++
		b.sim.stats.FixesSent.Add(1)
	}
}

// liveSession is one open StreamAssignments stream.
type liveSession struct {
	stream dispatchv1.DispatchService_StreamAssignmentsClient
	sendMu sync.Mutex
	done   chan struct{}
}

func (s *liveSession) send(req *dispatchv1.StreamAssignmentsRequest) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	return s.stream.Send(req)
}

// sessionLoop holds the courier's StreamAssignments session, reopening it after a back-off when it drops,
// with the cursor of the last delivery received so that the server replays only what came after.
func (b *courierBot) sessionLoop(ctx context.Context) {
	for n := 0; ctx.Err() == nil; {
		began := time.Now()
		err := b.session(ctx)
		if ctx.Err() != nil {
			return
		}
		b.sim.stats.Reconnects.Add(1)
		if err != nil {
			b.sim.failed("assignment session", err)
		}
		// A session that ended cleanly (a drain, a drop) or lasted a while reconnects at once; one that
		// keeps failing backs off further each time.
		if err == nil || time.Since(began) > 30*time.Second {
			n = 0
		}
		if !sleep(ctx, backoff(n, b.sim.jitter())) {
			return
		}
		n++
	}
}

// session runs one session until its stream ends.
func (b *courierBot) session(ctx context.Context) error {
	// When the run ends, the session is half-closed, so that the server finishes the commands in flight
	// and ends the stream itself; it is cut off only after closeGrace.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	actx, err := b.acct.authed(sctx)
	if err != nil {
		return err
	}
	stream, err := b.c.dispatch.StreamAssignments(actx)
	if err != nil {
		return fmt.Errorf("open StreamAssignments: %w", err)
	}
	b.sessMu.Lock()
	cursor, epoch := b.cursor, b.epoch
	b.sessMu.Unlock()
	if err := stream.Send(&dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Hello{
		Hello: &dispatchv1.SessionHello{ResumeCursor: cursor, CursorEpoch: epoch, AppVersion: "lastmile-simulator/1"}}}); err != nil {
		return fmt.Errorf("send hello: %w", err)
	}
	ls := &liveSession{stream: stream, done: make(chan struct{})}
	stopClose := context.AfterFunc(ctx, func() {
		ls.sendMu.Lock()
		_ = stream.CloseSend()
		ls.sendMu.Unlock()
		time.AfterFunc(closeGrace, cancel)
	})
	defer stopClose()
	var dropped atomic.Bool
	if d := b.sim.cfg.SessionDrop; d > 0 {
		after := d/2 + time.Duration(b.sim.jitter()*float64(d))
		drop := time.AfterFunc(after, func() {
			dropped.Store(true)
			ls.sendMu.Lock()
			_ = stream.CloseSend()
			ls.sendMu.Unlock()
			time.AfterFunc(closeGrace, cancel)
		})
		defer drop.Stop()
	}
	defer func() {
		b.sessMu.Lock()
		if b.sess == ls {
			b.sess = nil
		}
		b.sessMu.Unlock()
		close(ls.done)
	}()
	for {
		msg, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil || dropped.Load() {
				return nil
			}
			return fmt.Errorf("session: %w", err)
		}
		switch k := msg.GetKind().(type) {
		case *dispatchv1.StreamAssignmentsResponse_Started:
			b.sessMu.Lock()
			if k.Started.GetCursorEpoch() != b.epoch {
				b.epoch, b.cursor = k.Started.GetCursorEpoch(), 0
			}
			b.sess = ls
			close(b.changed)
			b.changed = make(chan struct{})
			b.sessMu.Unlock()
			for _, t := range k.Started.GetActiveTasks() {
				b.queue.push(&dispatchv1.StreamAssignmentsResponse{ServerTime: msg.GetServerTime(), Kind: &dispatchv1.StreamAssignmentsResponse_Task{
					Task: &dispatchv1.TaskNotice{Reason: dispatchv1.TaskNoticeReason_TASK_NOTICE_REASON_ASSIGNED, Task: t}}})
			}
			for _, o := range k.Started.GetOpenOffers() {
				b.queue.push(&dispatchv1.StreamAssignmentsResponse{ServerTime: msg.GetServerTime(), Kind: &dispatchv1.StreamAssignmentsResponse_Offer{Offer: o}})
			}
		case *dispatchv1.StreamAssignmentsResponse_CommandResult:
			b.pendMu.Lock()
			ch := b.pending[k.CommandResult.GetCommandId()]
			b.pendMu.Unlock()
			if ch != nil {
				select {
				case ch <- k.CommandResult:
				default:
				}
			}
		case *dispatchv1.StreamAssignmentsResponse_Drain:
			// The server asks the app to reconnect (shutdown, expiring credentials) or says another session
			// replaced this one: end this stream, and let sessionLoop decide.
			return nil
		default:
			b.sessMu.Lock()
			if msg.GetCursor() > b.cursor {
				b.cursor = msg.GetCursor()
			}
			b.sessMu.Unlock()
			b.queue.push(msg)
		}
	}
}

// liveSession waits for an open session.
func (b *courierBot) waitSession(ctx context.Context) (*liveSession, error) {
	for {
		b.sessMu.Lock()
		s, changed := b.sess, b.changed
		b.sessMu.Unlock()
		if s != nil {
			return s, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// command sends req as a new command and returns its result. A command whose session drops before the
// result arrives is sent again, with the same command id, on the next session (commands are idempotent by
// id).
func (b *courierBot) command(ctx context.Context, req *dispatchv1.StreamAssignmentsRequest) (*dispatchv1.CommandResult, error) {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	req.CommandId = b.nextCommandID()
	ch := make(chan *dispatchv1.CommandResult, 1)
	b.pendMu.Lock()
	b.pending[req.CommandId] = ch
	b.pendMu.Unlock()
	defer func() {
		b.pendMu.Lock()
		delete(b.pending, req.CommandId)
		b.pendMu.Unlock()
	}()
	for {
		s, err := b.waitSession(ctx)
		if err != nil {
			return nil, fmt.Errorf("command %s: no session: %w", req.CommandId, err)
		}
		if err := s.send(req); err != nil {
			// The stream broke; its reader ends it and a new session comes.
			select {
			case <-s.done:
				continue
			case <-ctx.Done():
				return nil, fmt.Errorf("command %s: %w", req.CommandId, ctx.Err())
			}
		}
		select {
		case r := <-ch:
			return r, nil
		case <-s.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("command %s: %w", req.CommandId, ctx.Err())
		}
	}
}

// ack acknowledges deliveries up to cursor, best effort: an ack lost with its stream only means the server
// replays the delivery, which the worker ignores.
func (b *courierBot) ack(cursor int64) {
	if cursor <= 0 {
		return
	}
	b.sessMu.Lock()
	s := b.sess
	b.sessMu.Unlock()
	if s != nil {
		_ = s.send(&dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Ack{Ack: &dispatchv1.Acknowledge{Cursor: cursor}}})
	}
}

// work handles the session's deliveries one at a time until ctx ends: answers offers and carries the
// tasks it accepts.
func (b *courierBot) work(ctx context.Context) {
	for {
		msg, ok := b.queue.pop(ctx)
		if !ok {
			return
		}
		switch k := msg.GetKind().(type) {
		case *dispatchv1.StreamAssignmentsResponse_Offer:
			b.answer(ctx, msg, k.Offer)
		case *dispatchv1.StreamAssignmentsResponse_Task:
			t := k.Task.GetTask()
			held := t.GetState() == dispatchv1.TaskState_TASK_STATE_ASSIGNED || t.GetState() == dispatchv1.TaskState_TASK_STATE_PICKED_UP
			if held && t.GetCourierId() == b.id && k.Task.GetReason() != dispatchv1.TaskNoticeReason_TASK_NOTICE_REASON_CANCELLED && !b.finished[t.GetId()] {
				b.ack(msg.GetCursor())
				// A notice may be a replay from before the bot carried the task to its end: carry only
				// what the server still says the bot holds.
				if now, ok := b.stillHeld(ctx, t.GetId()); ok {
					b.carry(ctx, now)
				}
				continue
			}
		}
		b.ack(msg.GetCursor())
	}
}

// answer accepts or declines an offer (the configured share is declined), and carries the task it
// accepted.
func (b *courierBot) answer(ctx context.Context, msg *dispatchv1.StreamAssignmentsResponse, n *dispatchv1.OfferNotice) {
	o := n.GetOffer()
	if b.seen[o.GetId()] || o.GetState() != dispatchv1.OfferState_OFFER_STATE_OPEN {
		b.ack(msg.GetCursor())
		return
	}
	if len(b.seen) > 1000 {
		clear(b.seen)
	}
	b.seen[o.GetId()] = true
	b.sim.stats.Offers.Add(1)
	b.sim.firstOffer(n.GetTask(), msg.GetServerTime())
	// A person reads the offer before answering: up to a second, and never past half the time left.
	think := time.Duration(200+b.rng.IntN(800)) * time.Millisecond
	if left := time.Until(o.GetExpireTime().AsTime()); think > left/2 {
		think = max(0, left/2)
	}
	if !sleep(ctx, think) {
		return
	}
	b.ack(msg.GetCursor())
	if b.rng.Float64() < b.sim.cfg.DeclineRatio {
		reasons := []dispatchv1.DeclineReason{dispatchv1.DeclineReason_DECLINE_REASON_TOO_FAR, dispatchv1.DeclineReason_DECLINE_REASON_TOO_BUSY, dispatchv1.DeclineReason_DECLINE_REASON_OTHER}
		res, err := b.command(ctx, &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Decline{
			Decline: &dispatchv1.DeclineOffer{OfferId: o.GetId(), Reason: reasons[b.rng.IntN(len(reasons))]}}})
		if err == nil && res.GetError() == nil {
			b.sim.stats.Declined.Add(1)
		}
		return
	}
	res, err := b.command(ctx, &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Accept{
		Accept: &dispatchv1.AcceptOffer{OfferId: o.GetId()}}})
	switch {
	case err != nil:
		if ctx.Err() == nil {
			b.sim.failed("accept offer", err)
		}
		return
	case res.GetError() != nil:
		// Too late: the offer expired or was withdrawn meanwhile.
		b.sim.stats.AcceptLost.Add(1)
		return
	}
	t := res.GetTask()
	b.sim.accepted(t)
	b.carry(ctx, t)
}

// carry takes an assigned task to its end: to the pickup, picked up, to the dropoff, a photo, delivered.
// It stops early when the task is cancelled or taken away meanwhile.
func (b *courierBot) carry(ctx context.Context, t *dispatchv1.Task) {
	b.current = t.GetId()
	defer func() {
		if len(b.finished) > 1000 {
			clear(b.finished)
		}
		b.finished[b.current] = true
		b.current = ""
	}()
	if t.GetState() == dispatchv1.TaskState_TASK_STATE_ASSIGNED {
		if !b.moveTo(ctx, point(t.GetPickup().GetLocation())) {
			return
		}
		p := b.position()
		if !b.step(ctx, "pick up", &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_PickedUp{PickedUp: &dispatchv1.ConfirmPickup{
			TaskId: t.GetId(), Location: &geov1.LatLng{Latitude: p.Lat, Longitude: p.Lng}, OccurTime: timestamppb.Now()}}}) {
			return
		}
		b.sim.count(t, &b.sim.stats.PickedUp)
	}
	if !b.moveTo(ctx, point(t.GetDropoff().GetLocation())) {
		return
	}
	var proofs []string
	if id, err := b.uploadPhoto(ctx, t.GetId()); err != nil {
		if ctx.Err() != nil {
			return
		}
		b.sim.failed("upload proof", err)
	} else {
		proofs = append(proofs, id)
		b.sim.count(t, &b.sim.stats.ProofsUploaded)
	}
	p := b.position()
	if b.step(ctx, "deliver", &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Delivered{Delivered: &dispatchv1.ConfirmDelivery{
		TaskId: t.GetId(), ProofUploadIds: proofs, Location: &geov1.LatLng{Latitude: p.Lat, Longitude: p.Lng}, OccurTime: timestamppb.Now()}}}) {
		b.sim.count(t, &b.sim.stats.Delivered)
	}
}

// stillHeld reads the task and returns it when the bot holds it (ASSIGNED or PICKED_UP to this courier).
func (b *courierBot) stillHeld(ctx context.Context, id string) (*dispatchv1.Task, bool) {
	t, err := call(ctx, b.acct, func(c context.Context) (*dispatchv1.Task, error) {
		return b.c.dispatch.GetTask(c, &dispatchv1.GetTaskRequest{Id: id})
	})
	if err != nil {
		if ctx.Err() == nil {
			b.sim.failed("get task", err)
		}
		return nil, false
	}
	held := t.GetState() == dispatchv1.TaskState_TASK_STATE_ASSIGNED || t.GetState() == dispatchv1.TaskState_TASK_STATE_PICKED_UP
	return t, held && t.GetCourierId() == b.id
}

// step sends a command of the task being carried, retrying those the server asks to retry; it reports
// success. A refusal that retrying cannot fix (the task was cancelled meanwhile) ends the task for the
// bot; any other is counted as an error.
func (b *courierBot) step(ctx context.Context, what string, req *dispatchv1.StreamAssignmentsRequest) bool {
	for n := 0; n < 5; n++ {
		res, err := b.command(ctx, req)
		if err != nil {
			if ctx.Err() != nil {
				return false
			}
			b.sim.failed(what, err)
		} else if e := res.GetError(); e == nil {
			return true
		} else if codes.Code(e.GetCode()) == codes.FailedPrecondition || codes.Code(e.GetCode()) == codes.NotFound {
			// Cancelled or reassigned meanwhile: nothing left to do.
			b.sim.cfg.Logger.Info("simulator: courier leaves a task", "courier", b.id, "task", b.current, "step", what,
				"code", codes.Code(e.GetCode()).String(), "reason", e.GetReason(), "message", e.GetMessage())
			return false
		} else {
			b.sim.failed(what, fmt.Errorf("%s: %s (%s)", codes.Code(e.GetCode()), e.GetMessage(), e.GetReason()))
		}
		if !sleep(ctx, backoff(n, b.sim.jitter())) {
			return false
		}
	}
	return false
}

// moveTo moves the courier in a straight line to dest, taking as long as route estimates for its mode
// (divided by the speed-up, within what the mode can do). It reports false when ctx ended or the task was
// taken away on the way.
func (b *courierBot) moveTo(ctx context.Context, dest Point) bool {
	from := b.position()
	d := distance(from, dest)
	travel := b.travelTime(ctx, from, dest, d)
	heading := bearing(from, dest)
	speed := 0.0
	if travel > 0 {
		speed = d / travel.Seconds()
	}
	start := time.Now()
	tick := time.NewTicker(b.sim.cfg.FixInterval)
	defer tick.Stop()
	for {
		f := 1.0
		if travel > 0 {
			f = math.Min(1, float64(time.Since(start))/float64(travel))
		}
		b.setPosition(lerp(from, dest, f), f < 1, speed, heading)
		if f >= 1 {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
		if b.interrupted(ctx) {
			b.sim.cfg.Logger.Info("simulator: courier's task was cancelled or reassigned on the way", "courier", b.id, "task", b.current)
			b.setPosition(b.position(), false, 0, heading)
			return false
		}
	}
}

// travelTime returns how long the bot takes for the trip: route's estimate for its mode, or the mode's
// average speed when route does not answer; divided by the speed-up and never faster than the mode's cap.
func (b *courierBot) travelTime(ctx context.Context, from, dest Point, d float64) time.Duration {
	est, err := call(ctx, b.acct, func(c context.Context) (*routev1.RouteEstimate, error) {
		return b.c.route.EstimateRoute(c, &routev1.EstimateRouteRequest{
			Origin: &geov1.LatLng{Latitude: from.Lat, Longitude: from.Lng}, Destination: &geov1.LatLng{Latitude: dest.Lat, Longitude: dest.Lng}, TransportMode: b.mode})
	})
	var dur time.Duration
	if err != nil || est.GetDuration() == nil {
		if err != nil && ctx.Err() == nil {
			b.sim.failed("estimate route", err)
		}
		dur = time.Duration(d / modeSpeed(b.mode) * float64(time.Second))
	} else {
		dur = est.GetDuration().AsDuration()
	}
	dur = time.Duration(float64(dur) / b.sim.cfg.Speedup)
	if fastest := time.Duration(d / modeSpeedCap(b.mode) * float64(time.Second)); dur < fastest {
		dur = fastest
	}
	return dur
}

// interrupted handles the deliveries that arrived while the bot carries a task: it declines offers (it is
// busy) and reports whether the task was cancelled or given to someone else.
func (b *courierBot) interrupted(ctx context.Context) bool {
	stop := false
	for {
		msg, ok := b.queue.tryPop()
		if !ok {
			return stop
		}
		switch k := msg.GetKind().(type) {
		case *dispatchv1.StreamAssignmentsResponse_Offer:
			o := k.Offer.GetOffer()
			if !b.seen[o.GetId()] && o.GetState() == dispatchv1.OfferState_OFFER_STATE_OPEN {
				b.seen[o.GetId()] = true
				b.sim.stats.Offers.Add(1)
				b.sim.firstOffer(k.Offer.GetTask(), msg.GetServerTime())
				if res, err := b.command(ctx, &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Decline{
					Decline: &dispatchv1.DeclineOffer{OfferId: o.GetId(), Reason: dispatchv1.DeclineReason_DECLINE_REASON_TOO_BUSY}}}); err == nil && res.GetError() == nil {
					b.sim.stats.Declined.Add(1)
				}
			}
		case *dispatchv1.StreamAssignmentsResponse_Task:
			// Only a cancellation or a reassignment to someone else takes the task away: a replayed older
			// notice (from before the bot held the task) says nothing about now.
			t, reason := k.Task.GetTask(), k.Task.GetReason()
			if t.GetId() == b.current && (reason == dispatchv1.TaskNoticeReason_TASK_NOTICE_REASON_CANCELLED ||
				reason == dispatchv1.TaskNoticeReason_TASK_NOTICE_REASON_REASSIGNED && t.GetCourierId() != b.id) {
				stop = true
			}
		}
		b.ack(msg.GetCursor())
	}
}

func point(l *geov1.LatLng) Point { return Point{Lat: l.GetLatitude(), Lng: l.GetLongitude()} }

// eventQueue is the deliveries a courier's session received and its worker has not handled yet.
type eventQueue struct {
	mu     sync.Mutex
	items  []*dispatchv1.StreamAssignmentsResponse
	notify chan struct{}
}

// push adds msg; beyond maxQueued it is dropped (see maxQueued).
func (q *eventQueue) push(msg *dispatchv1.StreamAssignmentsResponse) {
	q.mu.Lock()
	if len(q.items) < maxQueued {
		q.items = append(q.items, msg)
	}
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

func (q *eventQueue) tryPop() (*dispatchv1.StreamAssignmentsResponse, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return nil, false
	}
	msg := q.items[0]
	q.items[0] = nil
	q.items = q.items[1:]
	return msg, true
}

// pop waits for the next delivery; false when ctx ended.
func (q *eventQueue) pop(ctx context.Context) (*dispatchv1.StreamAssignmentsResponse, bool) {
	for {
		if msg, ok := q.tryPop(); ok {
			return msg, true
		}
		select {
		case <-q.notify:
		case <-ctx.Done():
			return nil, false
		}
	}
}

// nextCommandID returns the id of the bot's next command.
func (b *courierBot) nextCommandID() string {
	return b.cmdPrefix + strconv.FormatInt(b.cmdSeq.Add(1), 10)
}
