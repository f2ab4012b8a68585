package dispatch

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
)

// Tuning of courier sessions (HeartbeatInterval, in worker.go, is how often the hub refreshes the
// heartbeats of its replica's sessions).
const (
	// sessionBatch is how many deliveries a session reads from the store at once.
	sessionBatch = 100
	// sessionCloseTimeout bounds the store write of Close, which runs after the stream's context ended.
	sessionCloseTimeout = 5 * time.Second
	// maxEpoch bounds random epochs, so that they survive JSON clients' float64 numbers.
	maxEpoch = 1 << 53
	// CredentialsNotice is how long before its access token expires a session is sent
	// Drain{DrainCredentialsExpiring}, so that the app refreshes the token and opens a new session before
	// this one ends.
	CredentialsNotice = time.Minute
)

// Hello is what a courier app sends to open a session.
type Hello struct {
	// ResumeCursor is the highest cursor the app processed in an earlier session; 0 for none.
	ResumeCursor int64
	// Epoch is the cursor epoch the app last saw (SessionStarted.Epoch); 0 for none.
	Epoch int64
	// AppVersion and Capabilities are kept on the session record for diagnostics.
	AppVersion   string
	Capabilities []string
}

// DrainCode says why a session is asked to go.
type DrainCode string

// The drain codes.
const (
	// DrainServerShutdown: the replica shuts down; open a new session at once (another replica takes it).
	DrainServerShutdown DrainCode = "server_shutdown"
	// DrainSessionReplaced: a newer session of the courier started (another device, or a reconnect);
	// the app must not reconnect automatically.
	DrainSessionReplaced DrainCode = "session_replaced"
	// DrainCredentialsExpiring: the access token expires soon; reconnect with a fresh one.
	DrainCredentialsExpiring DrainCode = "credentials_expiring"
	// DrainAccountDisabled: the courier may no longer work.
	DrainAccountDisabled DrainCode = "account_disabled"
)

// Drain asks the app to let this session go.
type Drain struct {
	Code DrainCode
	// Grace is how long the server keeps the stream open after the drain (SERVER_SHUTDOWN); zero when it
	// ends it at once.
	Grace time.Duration
	// Reason is for logs.
	Reason string
}

// OfferNotice is a new offer with the task it concerns (redacted for a courier who does not hold it).
type OfferNotice struct {
	Offer Offer
	Task  Task
}

// TaskNotice is a change to a task the courier holds or held that the courier did not make.
type TaskNotice struct {
	Reason NoticeReason
	Task   Task
}

// SessionStarted is the first message of a session: who, where the log stands, and a snapshot of the
// courier's work, authoritative as of SnapshotCursor (replayed deliveries follow it).
type SessionStarted struct {
	SessionID string
	CourierID string
	// AckedCursor is the acknowledgement watermark after the hello's resume cursor was applied.
	AckedCursor int64
	// Epoch is the courier's cursor epoch: the app sends it back in its next hello.
	Epoch      int64
	ServerTime time.Time
	// ActiveTasks are the tasks the courier holds (ASSIGNED or PICKED_UP), oldest assignment first.
	ActiveTasks []Task
	// OpenOffers are the courier's open offers, oldest first.
	OpenOffers []OfferNotice
	// SnapshotCursor is the courier's highest delivery cursor when the snapshot was read.
	SnapshotCursor int64
}

// Outbound is one message Next returns for the adapter to send. Exactly one of Offer, OfferClosed,
// Notice and Drain is set. Cursor is the delivery's cursor for deliveries (Offer, OfferClosed, Notice:
// the app acknowledges it) and 0 for Drain, which is a session message.
//
// Each delivery is resolved when sent, from the current task: an offer or task that no longer exists is
// skipped, and so is an offer delivery whose offer is no longer open (its offer_closed delivery follows,
// or the courier answered it themselves). A skipped delivery's cursor still counts as sent, so acks up to
// it are valid and it is acknowledged with the next one.
type Outbound struct {
	Cursor int64
	// ServerTime is the server's clock when Next returned (StreamAssignmentsResponse.server_time).
	ServerTime  time.Time
	Offer       *OfferNotice
	OfferClosed *Offer
	Notice      *TaskNotice
	Drain       *Drain
}

// CourierSession is one courier's live session on this replica. Next is meant for one goroutine (the
// stream's sender); Ack, Execute and Close may be called from another (the receiver).
type CourierSession struct {
	s         *Service
	p         auth.Principal
	id        string
	courierID string
	started   SessionStarted
	wake      chan struct{}
	// limit is the courier's message budget (Admit).
	limit *rate.Limiter
	// gen counts wake-ups (poke): deliveries read before the latest one may be missing new ones, and their
	// tasks may have changed since.
	gen atomic.Uint64

	// Next's own state. buf holds deliveries read with their tasks (Store.DeliveriesWithTasks) at wake-up
	// bufGen; drained says that read returned every delivery there was, so that none is read again before
	// the next wake-up (every delivery appended wakes its courier's sessions through the hub).
	buf           []DeliveryWithTask
	bufGen        uint64
	drained       bool
	replayUntil   int64
	replayCounted int64 // highest cursor counted as replayed
	drainSent     bool
	replacedSent  bool
	expirySent    bool

	mu sync.Mutex
	// sent is the highest cursor Next returned or skipped, or an ack covered: Next never returns a
	// delivery at or below it.
	sent     int64
	replaced bool
	closed   bool
	// stale is set when the hub may have missed events: Next checks the session record before going on.
	stale bool
}

// OpenSession opens the calling courier's session: it makes it the courier's current session (ending any
// older one, here or on another replica, with DrainSessionReplaced), applies hello's resume cursor, and
// reads the snapshot. The caller must Close the session.
//
// The resume cursor is ignored (the watermark stays where the server has it) when hello's epoch is not
// the courier's, or when it is beyond the courier's newest delivery: the log was reset or restored, and
// acknowledging deliveries the app never saw would lose them.
//
// Errors: PermissionDenied when the caller is not a courier; FailedPrecondition when the user has no
// courier profile; Unavailable when the replica is draining or a dependency fails.
func (s *Service) OpenSession(ctx context.Context, hello Hello) (*CourierSession, error) {
	p := auth.FromContext(ctx)
	if !p.HasRole(auth.RoleCourier) {
		return nil, apperr.Errorf(apperr.PermissionDenied, "only couriers open assignment sessions")
	}
	var v violations
	v.text("hello.app_version", hello.AppVersion, maxAppVersion, false, false)
	if err := v.err(); err != nil {
		return nil, err
	}
	if draining, _ := s.hub.drainState(); draining {
		return nil, apperr.Errorf(apperr.Unavailable, "this server is shutting down; connect again")
	}
	courierID, err := s.callerCourier(ctx)
	if err != nil {
		if apperr.CodeOf(err) == apperr.NotFound {
			return nil, apperr.Wrap(apperr.FailedPrecondition, err, "no courier profile for this user")
		}
		return nil, fmt.Errorf("find the courier of user %s: %w", p.Subject, err)
	}
	last, err := s.store.LastCursor(ctx, courierID)
	if err != nil {
		return nil, fmt.Errorf("read the delivery log of courier %s: %w", courierID, err)
	}
	id := newID()
	now := storedTime(s.now())
	rec, err := s.store.UpdateSession(ctx, courierID, func(sess Session) (Session, error) {
		sess.CourierID = courierID
		if sess.Epoch == 0 {
			sess.Epoch = rand.Int64N(maxEpoch) + 1
		}
		if r := hello.ResumeCursor; r > 0 && hello.Epoch == sess.Epoch && r <= last {
			sess.Acked = max(sess.Acked, r)
		}
		sess.SessionID, sess.Open, sess.Replica, sess.Heartbeat = id, true, s.opts.Replica, now
		sess.AppVersion, sess.Capabilities = hello.AppVersion, hello.Capabilities
		return sess, nil
	})
	if err != nil {
		return nil, fmt.Errorf("open the session of courier %s: %w", courierID, err)
	}
	c := &CourierSession{
		s: s, p: p, id: id, courierID: courierID,
		wake: make(chan struct{}, 1),
		sent: rec.Acked, limit: s.sessionLimits.of(courierID),
	}
	c.poke()
	if !s.hub.addSession(c) {
		c.closeRecord()
		return nil, apperr.Errorf(apperr.Unavailable, "this server is shutting down; connect again")
	}
	if err := c.snapshot(ctx, rec); err != nil {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		s.hub.removeSession(c)
		c.closeRecord()
		return nil, err
	}
	s.metrics.SessionOpened()
	s.courierArrived(ctx)
	return c, nil
}

// snapshot reads the courier's work into c.started.
func (c *CourierSession) snapshot(ctx context.Context, rec Session) error {
	// The cursor first: everything a delivery up to it says is in the tasks read after it.
	cursor, err := c.s.store.LastCursor(ctx, c.courierID)
	if err != nil {
		return fmt.Errorf("read the delivery log of courier %s: %w", c.courierID, err)
	}
	held, err := c.s.store.HeldTasks(ctx, c.courierID)
	if err != nil {
		return fmt.Errorf("read the tasks of courier %s: %w", c.courierID, err)
	}
	offered, err := c.s.store.OfferedTasks(ctx, c.courierID)
	if err != nil {
		return fmt.Errorf("read the offers of courier %s: %w", c.courierID, err)
	}
	st := SessionStarted{
		SessionID: c.id, CourierID: c.courierID, AckedCursor: rec.Acked, Epoch: rec.Epoch,
		ServerTime: c.s.now(), SnapshotCursor: cursor,
		ActiveTasks: make([]Task, 0, len(held)),
		OpenOffers:  make([]OfferNotice, 0, len(offered)),
	}
	for _, t := range held {
		st.ActiveTasks = append(st.ActiveTasks, c.redact(t))
	}
	for _, t := range offered {
		if o := t.CurrentOffer(); o != nil && o.CourierID == c.courierID {
			st.OpenOffers = append(st.OpenOffers, OfferNotice{Offer: *o, Task: c.redact(t)})
		}
	}
	c.started = st
	c.replayUntil = cursor
	return nil
}

// ID returns the session's id.
func (c *CourierSession) ID() string { return c.id }

// CourierID returns the courier whose session it is.
func (c *CourierSession) CourierID() string { return c.courierID }

// Started returns the session's first message.
func (c *CourierSession) Started() SessionStarted { return c.started }

// Next returns the next message to send: first the unacknowledged deliveries after the watermark, in
// cursor order, then new ones as they are appended (read from the store after the last cursor sent, so
// none is lost or sent twice in a session). It never returns a delivery at or below a cursor Ack was
// given, even one Ack was given while Next was reading it. It waits until there is one or ctx ends.
//
// It also ends the session: after a newer session of the courier started it returns one
// Drain{DrainSessionReplaced}, then Aborted; after Service.Drain it returns one Drain{DrainServerShutdown}
// (deliveries continue during the grace), then Unavailable once the grace has passed; CredentialsNotice
// before the caller's access token expires (auth.Principal.ExpiresAt) it returns one
// Drain{DrainCredentialsExpiring} (deliveries continue until then), then Unauthenticated from the expiry
// on, so that a session never outlives the token that opened it. Unavailable after Close; ctx's error
// when ctx ends; a store failure's error.
func (c *CourierSession) Next(ctx context.Context) (Outbound, error) {
	out, err := c.next(ctx)
	if err != nil {
		return Outbound{}, err
	}
	out.ServerTime = c.s.now()
	return out, nil
}

func (c *CourierSession) next(ctx context.Context) (Outbound, error) {
	for {
		if err := ctx.Err(); err != nil {
			return Outbound{}, err
		}
		c.mu.Lock()
		replaced, closed := c.replaced, c.closed
		c.mu.Unlock()
		switch {
		case closed:
			return Outbound{}, apperr.Errorf(apperr.Unavailable, "the session is closed")
		case replaced && !c.replacedSent:
			c.replacedSent = true
			return Outbound{Drain: &Drain{Code: DrainSessionReplaced, Reason: "a newer session of this courier started"}}, nil
		case replaced:
			return Outbound{}, apperr.Errorf(apperr.Aborted, "a newer session of this courier started")
		}
		if exp := c.p.ExpiresAt; !exp.IsZero() {
			left := exp.Sub(c.s.now())
			if left <= 0 {
				return Outbound{}, apperr.Errorf(apperr.Unauthenticated, "the access token expired: refresh it and open a new session")
			}
			if !c.expirySent && left <= CredentialsNotice {
				c.expirySent = true
				return Outbound{Drain: &Drain{Code: DrainCredentialsExpiring, Grace: left,
					Reason: "the access token expires soon: refresh it and open a new session"}}, nil
			}
		}
		draining, drainEnd := c.s.hub.drainState()
		if draining {
			if !c.drainSent {
				c.drainSent = true
				return Outbound{Drain: &Drain{Code: DrainServerShutdown, Grace: max(time.Until(drainEnd), 0),
					Reason: "server shutting down"}}, nil
			}
			if !time.Now().Before(drainEnd) {
				return Outbound{}, apperr.Errorf(apperr.Unavailable, "the server is shutting down; connect again")
			}
		}
		if err := c.checkCurrent(ctx); err != nil {
			return Outbound{}, err
		}
		if c.isReplaced() {
			continue
		}
		out, ok, err := c.nextDelivery(ctx)
		if err != nil || ok {
			return out, err
		}
		if err := c.wait(ctx, draining, drainEnd); err != nil {
			return Outbound{}, err
		}
	}
}

// nextDelivery returns the next delivery to send, reading from the store when the buffer is empty or a
// wake-up came after it was read; ok is false when there is none now.
func (c *CourierSession) nextDelivery(ctx context.Context) (Outbound, bool, error) {
	for {
		gen := c.gen.Load()
		if gen != c.bufGen {
			// New deliveries, or changed tasks: read again after the last cursor sent.
			c.buf, c.drained = nil, false
		}
		if len(c.buf) == 0 {
			if c.drained {
				return Outbound{}, false, nil
			}
			after := c.sentCursor()
			batch, err := c.s.store.DeliveriesWithTasks(ctx, c.courierID, after, sessionBatch)
			if err != nil {
				return Outbound{}, false, fmt.Errorf("read the deliveries of courier %s after %d: %w", c.courierID, after, err)
			}
			c.bufGen, c.drained = gen, len(batch) < sessionBatch
			if len(batch) == 0 {
				return Outbound{}, false, nil
			}
			replayed := 0
			for _, d := range batch {
				if d.Cursor <= c.replayUntil && d.Cursor > c.replayCounted {
					replayed++
					c.replayCounted = d.Cursor
				}
			}
			if replayed > 0 {
				c.s.metrics.Replayed(replayed)
			}
			c.buf = batch
		}
		d := c.buf[0]
		c.buf = c.buf[1:]
		// An ack may have landed since the read (Ack raises sent before its store write): what it
		// covers is never sent, and sent stays the highest cursor sent or acknowledged.
		c.mu.Lock()
		covered := d.Cursor <= c.sent
		c.sent = max(c.sent, d.Cursor)
		c.mu.Unlock()
		if covered {
			continue
		}
		if out, ok := c.resolve(d); ok {
			return out, true, nil
		}
	}
}

// resolve turns a delivery into what is sent, from its task as read with it, which no wake-up has
// followed since (see nextDelivery: every change that closes an offer or concerns the courier appends a
// delivery, which wakes the session); ok is false when the delivery is skipped (see Outbound).
func (c *CourierSession) resolve(d DeliveryWithTask) (Outbound, bool) {
	if d.Superseded {
		return Outbound{}, false // an offer no longer open, whose task the store did not read
	}
	if !d.Found {
		c.s.logger.Warn("courier delivery of a missing task skipped", "courier", c.courierID, "cursor", d.Cursor, "task", d.TaskID)
		return Outbound{}, false
	}
	t := d.Task
	out := Outbound{Cursor: d.Cursor}
	switch d.Kind {
	case DeliveryOffer, DeliveryOfferClosed:
		o := t.Offer(d.OfferID)
		if o == nil {
			c.s.logger.Warn("courier delivery of a missing offer skipped", "courier", c.courierID, "cursor", d.Cursor, "offer", d.OfferID)
			return Outbound{}, false
		}
		if d.Kind == DeliveryOfferClosed {
			closed := *o
			out.OfferClosed = &closed
			return out, true
		}
		if o.State != OfferOpen {
			return Outbound{}, false // superseded: an offer_closed follows, or the courier answered it
		}
		out.Offer = &OfferNotice{Offer: *o, Task: c.redact(t)}
	case DeliveryTask:
		out.Notice = &TaskNotice{Reason: d.Reason, Task: c.redact(t)}
	default:
		c.s.logger.Warn("courier delivery of an unknown kind skipped", "courier", c.courierID, "cursor", d.Cursor, "kind", d.Kind)
		return Outbound{}, false
	}
	return out, true
}

// redact returns t as this courier may see it.
func (c *CourierSession) redact(t Task) Task { return t.For(c.p, c.courierID, ViewFull) }

// wait waits for a wake-up, the end of a drain's grace, the next step of the access token's expiry
// (the drain that announces it, the expiry itself), or ctx. The heartbeat is the hub's (hub.beat), so
// only those need a timer.
func (c *CourierSession) wait(ctx context.Context, draining bool, drainEnd time.Time) error {
	timeout, timed := time.Duration(0), false
	if draining {
		timeout, timed = max(time.Until(drainEnd), 0), true
	}
	if exp := c.p.ExpiresAt; !exp.IsZero() {
		if !c.expirySent {
			exp = exp.Add(-CredentialsNotice)
		}
		if left := max(exp.Sub(c.s.now()), 0); !timed || left < timeout {
			timeout, timed = left, true
		}
	}
	if !timed {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.wake:
		}
		return nil
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-c.wake:
	case <-t.C:
	}
	return nil
}

// checkCurrent reads the session record when the hub may have missed its replacement.
func (c *CourierSession) checkCurrent(ctx context.Context) error {
	c.mu.Lock()
	stale := c.stale
	c.stale = false
	c.mu.Unlock()
	if !stale {
		return nil
	}
	rec, err := c.s.store.GetSession(ctx, c.courierID)
	if err != nil {
		c.mu.Lock()
		c.stale = true
		c.mu.Unlock()
		return fmt.Errorf("read the session of courier %s: %w", c.courierID, err)
	}
	if rec.SessionID != c.id {
		c.replace()
	}
	return nil
}

func (c *CourierSession) isReplaced() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.replaced
}

// Ack acknowledges every delivery up to cursor. An ack below the watermark changes nothing. It is applied
// even after a newer session replaced this one: this session did send the deliveries up to cursor.
//
// The contract bounds an ack by the highest cursor sent to the courier, not by this session: a delivery
// an earlier session sent may be acknowledged before this one has replayed it (an app flushing, after
// its hello, the ack it could not send before its connection dropped). So the bound is the higher of
// what this session sent and the courier's log when it opened (SessionStarted.SnapshotCursor); such an
// ack moves the session past the deliveries it acknowledges, which are then not replayed.
//
// Errors: Invalid when cursor is not positive or beyond that bound (the contract ends the stream); a
// store failure's error.
func (c *CourierSession) Ack(ctx context.Context, cursor int64) error {
	c.mu.Lock()
	sent := c.sent
	bound := max(sent, c.started.SnapshotCursor)
	if cursor <= 0 || cursor > bound {
		c.mu.Unlock()
		return apperr.InvalidFields("acknowledged cursor beyond what was sent",
			apperr.FieldViolation{Field: "ack.cursor", Description: fmt.Sprintf("%d is beyond the highest cursor sent, %d", cursor, bound)})
	}
	// Raised before the store write, so that Next, which may be resolving a delivery it read before this
	// ack, never returns one the ack covers (a failed write ends the stream anyway).
	c.sent = max(c.sent, cursor)
	c.mu.Unlock()
	if cursor > sent {
		c.poke() // Next drops what it read before the ack and reads on after it
	}
	if err := c.s.store.AckSession(ctx, c.courierID, cursor); err != nil {
		return fmt.Errorf("acknowledge cursor %d of courier %s: %w", cursor, c.courierID, err)
	}
	return nil
}

func (c *CourierSession) sentCursor() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sent
}

// Execute runs a courier command once per command id: a command id seen before (for at least
// Options.Idempotency) is answered with the stored final outcome, Replayed set (a success with the task
// as it is now); the same id with another command is refused with Conflict and reason
// "COMMAND_ID_REUSED". Retryable failures (Aborted, Unavailable) are not stored, so the same id runs
// again.
//
// An offer's answer (accept, decline) runs before its command id is looked up: when it changes the task,
// its transaction records the command id, and fails on a record that exists already, changing nothing,
// so that a success needs no lookup; any other outcome is answered only after the lookup, exactly as if
// the lookup had come first.
func (c *CourierSession) Execute(ctx context.Context, commandID string, cmd Command) CommandResult {
	if commandID != "" && (cmd.Accept != nil || cmd.Decline != nil) {
		res, recorded := c.s.run(ctx, c.courierID, commandID, cmd)
		if recorded {
			return res
		}
		rec, found, err := c.s.store.Command(ctx, c.courierID, commandID)
		if err != nil {
			return c.lookupFailed(commandID, err)
		}
		if found {
			return c.replay(ctx, commandID, cmd, rec)
		}
		c.s.storeOutcome(ctx, c.courierID, commandID, cmd, res)
		return res
	}
	rec, found, err := c.s.store.Command(ctx, c.courierID, commandID)
	if err != nil {
		return c.lookupFailed(commandID, err)
	}
	if !found {
		return c.s.Execute(ctx, c.courierID, commandID, cmd)
	}
	return c.replay(ctx, commandID, cmd, rec)
}

// Refuse answers a command that breaks the contract's rules for its fields (why, in a unary call's
// words) and is therefore not executed. Its command id is looked up all the same, as Execute's is: an id
// whose outcome is stored (an earlier command executed under it) is answered from that record, as every
// command under a used id is: the stored outcome, Replayed set, when cmd (the command as far as it could
// be decoded) is the one stored, and Conflict, reason COMMAND_ID_REUSED, when it is not. Only under an id
// not used yet is the answer INVALID_ARGUMENT, reason INVALID_COMMAND, which is not stored: sent again,
// the command is checked again.
func (c *CourierSession) Refuse(ctx context.Context, commandID string, cmd Command, why string) CommandResult {
	rec, found, err := c.s.store.Command(ctx, c.courierID, commandID)
	if err != nil {
		return c.lookupFailed(commandID, err)
	}
	if found {
		return c.replay(ctx, commandID, cmd, rec)
	}
	return CommandResult{CommandID: commandID, Err: &CommandError{Code: apperr.Invalid, Message: why, Reason: ReasonInvalidCommand}}
}

// lookupFailed answers a command whose id could not be looked up: Unavailable, to be sent again.
func (c *CourierSession) lookupFailed(commandID string, err error) CommandResult {
	c.s.logger.Warn("look a courier command up", "courier", c.courierID, "command", commandID, "err", err)
	return CommandResult{CommandID: commandID, Err: &CommandError{Code: apperr.Unavailable,
		Message: "cannot check the command now; send it again under the same command_id", RetryAfter: time.Second}}
}

// replay answers cmd, sent under commandID, from rec, the stored outcome of that id.
func (c *CourierSession) replay(ctx context.Context, commandID string, cmd Command, rec CommandRecord) CommandResult {
	if rec.Fingerprint != cmd.Fingerprint() {
		return CommandResult{CommandID: commandID, Err: &CommandError{Code: apperr.Conflict,
			Message: "command_id " + commandID + " was already used for another command", Reason: ReasonCommandIDReused}}
	}
	res := CommandResult{CommandID: commandID, Replayed: true}
	if rec.Err != nil {
		e := *rec.Err
		res.Err = &e
		return res
	}
	if cmd.Decline != nil || rec.TaskID == "" {
		return res
	}
	t, err := c.s.store.GetTask(ctx, rec.TaskID)
	if err != nil {
		c.s.logger.Warn("read the task of a replayed command", "courier", c.courierID, "command", commandID, "err", err)
		return CommandResult{CommandID: commandID, Err: &CommandError{Code: apperr.Unavailable,
			Message: "cannot read the task now; send the command again under the same command_id", RetryAfter: time.Second}}
	}
	out := c.redact(t)
	res.Task = &out
	return res
}

// Close ends the session: it is forgotten by the replica and, unless a newer one replaced it, marked
// closed in the store (the courier is no longer connected). When the session's user may no longer work
// (the suspension, deletion or role change that ended the session), the courier's open offers are
// withdrawn (withdrawOffers). It is idempotent and safe beside Next.
func (c *CourierSession) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	c.poke()
	c.s.hub.removeSession(c)
	c.closeRecord()
	c.s.metrics.SessionClosed()
	c.withdrawIfBarred()
}

// withdrawIfBarred takes back the courier's open offers when the session's user may no longer work
// (barCourier). An offer waits for its deadline after a session ends because the app may reconnect and
// answer it; a courier whose account was suspended or deleted, or lost the courier role, cannot. The
// replica also hears of the change itself (followAccounts), session or not; this covers a change it
// could not act on then. A standing that cannot be read leaves the offers to their deadlines.
func (c *CourierSession) withdrawIfBarred() {
	if c.s.accounts == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), sessionCloseTimeout)
	defer cancel()
	why, err := c.s.barred(ctx, c.p.Subject)
	if err != nil {
		c.s.logger.Warn("dispatch: check the account of a closed session", "courier", c.courierID, "err", err)
		return
	}
	if why != "" {
		c.s.barCourier(ctx, c.courierID, "the courier cannot take tasks: "+why)
	}
}

// closeRecord marks the session record closed if it is still this session's.
func (c *CourierSession) closeRecord() {
	ctx, cancel := context.WithTimeout(context.Background(), sessionCloseTimeout)
	defer cancel()
	_, err := c.s.store.UpdateSession(ctx, c.courierID, func(sess Session) (Session, error) {
		if sess.SessionID == c.id {
			sess.Open = false
		}
		return sess, nil
	})
	if err != nil {
		c.s.logger.Warn("close a courier session", "courier", c.courierID, "session", c.id, "err", err)
	}
}

// poke wakes Next, which reads its deliveries again.
func (c *CourierSession) poke() {
	c.gen.Add(1)
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// recheck makes Next check the session record and re-read its deliveries: the hub may have missed
// events.
func (c *CourierSession) recheck() {
	c.mu.Lock()
	c.stale = true
	c.mu.Unlock()
	c.poke()
}

// replace marks the session replaced by a newer one and wakes Next.
func (c *CourierSession) replace() {
	c.mu.Lock()
	c.replaced = true
	c.mu.Unlock()
	c.poke()
}

// Drain starts this replica's graceful shutdown: new sessions are refused with Unavailable, and every
// local session's Next returns Drain{DrainServerShutdown, grace}, keeps delivering during grace, and then
// ends with Unavailable. Call it before stopping the gRPC server, and wait grace.
func (s *Service) Drain(grace time.Duration) { s.hub.drain(grace) }
