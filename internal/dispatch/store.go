package dispatch

import (
	"context"
	"errors"
	"time"

	"lastmile/internal/geo"
	"lastmile/internal/platform/apperr"
)

// DeliveryKind is what a courier session delivery carries.
type DeliveryKind string

// The delivery kinds.
const (
	DeliveryOffer       DeliveryKind = "offer"
	DeliveryOfferClosed DeliveryKind = "offer_closed"
	DeliveryTask        DeliveryKind = "task"
)

// NoticeReason is why a courier is told about a task change it did not make.
type NoticeReason string

// The notice reasons.
const (
	NoticeAssigned   NoticeReason = "assigned"
	NoticeReassigned NoticeReason = "reassigned"
	NoticeCancelled  NoticeReason = "cancelled"
	NoticeUpdated    NoticeReason = "updated"
)

// Delivery is one entry of a courier's session log: persisted until acknowledged, replayed on every new
// session. It names what it concerns; the session sends the task and offer as they are when sent.
type Delivery struct {
	// Cursor is assigned by the store on append: strictly increasing per courier, in commit order.
	Cursor     int64
	CourierID  string
	Kind       DeliveryKind
	TaskID     string
	OfferID    string
	Reason     NoticeReason
	CreateTime time.Time
}

// Session is a courier's session record: which session is current and what it acknowledged.
type Session struct {
	CourierID string
	// SessionID is the current (latest) session; a session whose id is not this one is replaced.
	SessionID string
	// Epoch changes when the delivery log was reset; a hello from another epoch resumes from nothing.
	Epoch int64
	// Acked is the acknowledgement watermark: every delivery up to it is acknowledged.
	Acked int64
	// Replica is the process holding the session; Heartbeat when it last said it still does. A courier is
	// connected while a session is open and its heartbeat is recent.
	Replica   string
	Heartbeat time.Time
	Open      bool
	// AppVersion and Capabilities are from the hello.
	AppVersion   string
	Capabilities []string
}

// SessionRef names one session of a courier (Store.BeatSessions).
type SessionRef struct {
	CourierID string
	SessionID string
}

// DeliveryWithTask is a delivery with the task it names (Store.DeliveriesWithTasks).
type DeliveryWithTask struct {
	Delivery
	// Task is the task as read with the delivery; Found is false (and Task zero) when there is none.
	Task  Task
	Found bool
	// Superseded is set (Found false, Task zero) on an offer delivery whose task exists but is not
	// offered to the delivery's courier now: its offer is no longer open, so the task was not read.
	Superseded bool
}

// CommandError is a command's business failure, answered in the session and stored as its final outcome.
type CommandError struct {
	Code    apperr.Code
	Message string
	// Reason is a machine-readable code, such as "OFFER_EXPIRED".
	Reason     string
	Metadata   map[string]string
	RetryAfter time.Duration
}

// CommandRecord is the stored final outcome of a courier command, so that a command resent under the same
// id is answered the same way and not applied twice.
type CommandRecord struct {
	CourierID string
	CommandID string
	// Fingerprint identifies the command's content: the same id with another fingerprint is a reuse.
	Fingerprint string
	TaskID      string
	Err         *CommandError
	CreateTime  time.Time
}

// JobKind is a durable side effect on the courier service.
type JobKind string

// The job kinds.
const (
	JobClaim   JobKind = "claim"
	JobRelease JobKind = "release"
)

// Job is a durable call to the courier service, enqueued in the transaction of the change that needs it
// and retried until it succeeds.
type Job struct {
	Kind      JobKind
	CourierID string
	TaskID    string
	// ExpectedRelease is the claim's expected release time (claims only).
	ExpectedRelease time.Time
	// Previous is the courier who held the task before a reassignment (claims only): the claim job
	// releases it first, because the courier service refuses to claim a task held elsewhere.
	Previous string
	// Final says that the task was in a final state (DELIVERED, FAILED, CANCELLED) when the release was
	// enqueued (releases only): it is never anyone's again, so the job releases without reading it.
	Final bool
}

// Change is what a closure passed to Store.UpdateTask returns: everything the transition writes, in one
// transaction, beside the task event the store always appends.
type Change struct {
	// Task is the task after the change. The store sets its Version to the stored version plus one
	// (unless Quiet).
	Task Task
	// Deliveries are appended to couriers' session logs (the store assigns their cursors).
	Deliveries []Delivery
	// Decision is inserted, or replaced when a decision with its id exists.
	Decision *Decision
	// KeepDecisions, when above 0 and Decision is set, bounds the task's recorded decisions: once Decision
	// is written, those beyond the newest KeepDecisions (by decide time, then id) are deleted.
	KeepDecisions int
	// Quiet says that the change touches nothing a reader of the task sees, only the engine's own fields
	// (a deferral's due time and search count): the store writes it without a new version, so the etag
	// stays, and appends no task event, so no watcher is told. A quiet change has no deliveries.
	Quiet bool
	// Waiting says that the task now waits for a courier (a deferral): the store appends a TopicWaiting
	// event, one per transaction however many of its changes wait, so that every replica learns that a
	// task may be waiting (see wake.go).
	Waiting bool
	// Command is the command's outcome, stored with the change.
	Command *CommandRecord
	// Jobs are enqueued.
	Jobs []Job
}

// TaskWrite is one task's part of Store.UpdateTasks: the task's id and the closure UpdateTask would
// run on it.
type TaskWrite struct {
	ID string
	Fn func(Task) (Change, error)
}

// TaskFilter narrows ListTasks, CountTasks and WatchTasks. Zero fields do not filter.
type TaskFilter struct {
	States []State
	// CourierID keeps the tasks this courier holds or held last (Task.CourierID).
	CourierID  string
	CustomerID string
	// AnyHolder widens CourierID to every task the courier held at some point: also those they handed
	// back, or that were moved to another courier or taken from them since (Task.HeldBy). It is what a
	// courier's own ListTasks and WatchTasks show. Not part of a page token's filter key (filterKey), so
	// that the tokens issued before it existed still work.
	AnyHolder bool `json:"-"`
}

// TaskQuery is one page of ListTasks: newest first (create time, then id), after the keyset cursor.
type TaskQuery struct {
	Filter TaskFilter
	Limit  int
	// AfterCreate and AfterID are the last task of the previous page; zero for the first page.
	AfterCreate time.Time
	AfterID     string
}

// Store keeps dispatch's durable state. Implementations: sqlstore on SQLite and PostgreSQL. Every write
// that changes a task also appends an event to the service's event feed in the same transaction (topic
// TopicTask, key the task id); every delivery appends one (TopicDelivery, key the courier id), whose
// sequence number is the delivery's cursor; OpenSession appends TopicSession.
type Store interface {
	// CreateTask inserts t unless a task with t.CreatedBy and t.RequestID exists; then it returns that one
	// and created false. t.Version is set to 1.
	CreateTask(ctx context.Context, t Task) (out Task, created bool, err error)
	// CreateTaskCapped is CreateTask with a cap: when inserting t would give t's customer more than
	// maxOpen open tasks (in any state but DELIVERED, CANCELLED and FAILED), nothing is written and the
	// error is ErrTooManyOpenTasks. The count is kept in the insert's transaction, so concurrent creates
	// for one customer never get past the cap together. A request made before (created false) is
	// answered whatever the count.
	CreateTaskCapped(ctx context.Context, t Task, maxOpen int64) (out Task, created bool, err error)
	// GetTask returns the task with id. NotFound when there is none.
	GetTask(ctx context.Context, id string) (Task, error)
	// TaskHolder returns the state, the holder (CourierID) and the version of the task with id, without
	// reading the rest of it. NotFound when there is none.
	TaskHolder(ctx context.Context, id string) (state State, courierID string, version int64, err error)
	// TaskByOffer returns the task that has the offer with offerID. NotFound when none has.
	TaskByOffer(ctx context.Context, offerID string) (Task, error)
	// ListTasks returns up to q.Limit tasks matching q.Filter after q's cursor, newest first.
	ListTasks(ctx context.Context, q TaskQuery) ([]Task, error)
	// FinishedTasks returns up to limit tasks in a final state (DELIVERED, CANCELLED, FAILED) that match f
	// and were last updated at or after since, the most recently updated first, then by id descending.
	// f.States narrows the final states; its other states are ignored, and none of them final means none.
	FinishedTasks(ctx context.Context, f TaskFilter, since time.Time, limit int) ([]Task, error)
	// CountTasks counts the tasks matching f.
	CountTasks(ctx context.Context, f TaskFilter) (int, error)
	// CountByState counts every task by state, for metrics.
	CountByState(ctx context.Context) (map[State]int, error)
	// UpdateTask locks the task with id, runs fn on it and writes what fn returns, in one transaction.
	// When fn fails nothing is written and its error is returned. NotFound when there is no such task.
	UpdateTask(ctx context.Context, id string, fn func(Task) (Change, error)) (Task, error)
	// UpdateTaskByOffer is UpdateTask for the task that has the offer with offerID, found and locked by
	// one read in the transaction. NotFound when no task has that offer.
	UpdateTaskByOffer(ctx context.Context, offerID string, fn func(Task) (Change, error)) (Task, error)
	// UpdateTasks applies updates as UpdateTask would, one after the other, in one transaction when it
	// can: it returns, per update, the task written or the error. An update whose closure fails writes
	// nothing and gets the closure's error; the others are written all the same. When the transaction
	// fails, each update is applied again alone (UpdateTask), so that one task's failing write does not
	// lose the others. Two updates of one task see each other's result. Closures follow UpdateTask's
	// rules: pure, and never calling the Store.
	UpdateTasks(ctx context.Context, updates []TaskWrite) ([]Task, []error)
	// LeaseDue leases up to limit tasks whose DueTime is at or before now and that no live lease holds,
	// to owner until now+lease, highest priority first, then oldest; it returns them.
	LeaseDue(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]Task, error)
	// Unlease ends owner's lease on the task, if it still holds it.
	Unlease(ctx context.Context, taskID, owner string) error
	// UnleaseTasks ends owner's leases on the tasks with taskIDs that it still holds, in one statement.
	UnleaseTasks(ctx context.Context, taskIDs []string, owner string) error
	// OneProcess reports whether this process alone works the store's database (SQLite: a database
	// file belongs to the one process holding lastmile's data directory lock), so that a lease it did
	// not take was taken by a process that has ended. False on a database replicas share (PostgreSQL).
	OneProcess() bool
	// UnleaseOthers ends every lease of a task in the work queue (a due time set) that owner does not
	// hold, and returns how many it ended.
	UnleaseOthers(ctx context.Context, owner string) (int, error)
	// WakePending makes every PENDING task due now (a courier became available).
	WakePending(ctx context.Context, now time.Time) error
	// WakeNext makes up to limit PENDING tasks that are due after now due now: those LeaseDue would
	// take first once due, highest priority first, then oldest (a courier became free for one).
	WakeNext(ctx context.Context, now time.Time, limit int) error
	// WakeTasks makes the PENDING tasks among taskIDs that are due after now due now.
	WakeTasks(ctx context.Context, now time.Time, taskIDs []string) error
	// AnyWaiting reports whether any PENDING task is due after now: a task waiting for its back-off.
	AnyWaiting(ctx context.Context, now time.Time) (bool, error)
	// WaitingNear returns up to limit PENDING tasks that are due after now and whose pickup is inside
	// box (edges included; a box whose West is greater than its East crosses the antimeridian), highest
	// priority first, then oldest, then by id, each with its parcel size and excluded couriers.
	WaitingNear(ctx context.Context, now time.Time, box geo.Box, limit int) ([]WaitingTask, error)
	// Decisions returns a task's newest decisions first, at most limit.
	Decisions(ctx context.Context, taskID string, limit int) ([]Decision, error)
	// HeldTasks returns the tasks courierID holds (ASSIGNED or PICKED_UP), oldest assignment first.
	HeldTasks(ctx context.Context, courierID string) ([]Task, error)
	// HeldTasksOf returns the tasks each of courierIDs holds, in one read, ordered as HeldTasks orders
	// them; a courier who holds none is not in the map. Of each task it returns what planning the
	// courier's remaining stops needs: ID, State, CourierID, Pickup, Dropoff, AssignTime and Version;
	// the other fields are zero. The slices may be shared with other calls: read them, never change them.
	HeldTasksOf(ctx context.Context, courierIDs []string) (map[string][]Task, error)
	// OfferedTasks returns the OFFERED tasks whose open offer is to courierID, oldest offer first.
	OfferedTasks(ctx context.Context, courierID string) ([]Task, error)
	// CouriersWithWork returns, in id order, up to limit ids above after of the couriers that have an
	// open offer or hold a task they did not pick up yet (ASSIGNED): what a courier who may no longer
	// work loses (the account sweep pages through them).
	CouriersWithWork(ctx context.Context, after string, limit int) ([]string, error)
	// OfferOpen returns which of courierIDs have an open offer.
	OfferOpen(ctx context.Context, courierIDs []string) (map[string]bool, error)
	// Deliveries returns up to limit of courierID's deliveries with cursors above after, in cursor order.
	Deliveries(ctx context.Context, courierID string, after int64, limit int) ([]Delivery, error)
	// LastCursor returns the highest cursor of courierID's deliveries, 0 for none.
	LastCursor(ctx context.Context, courierID string) (int64, error)
	// GetSession returns courierID's session record; a zero Session (with CourierID set) when none.
	GetSession(ctx context.Context, courierID string) (Session, error)
	// UpdateSession locks courierID's session record (creating it), runs fn and writes what it returns.
	// When the session id changed it appends a TopicSession event, so that the replaced session ends on
	// whichever replica holds it.
	UpdateSession(ctx context.Context, courierID string, fn func(Session) (Session, error)) (Session, error)
	// AckSession raises courierID's acknowledgement watermark to cursor, never lowering it, in one
	// statement, whichever session is current. NotFound when the courier has no session record.
	AckSession(ctx context.Context, courierID string, cursor int64) error
	// BeatSessions sets the heartbeat to at of every record among sessions that is open and whose current
	// session is the one named, in one statement per few hundred sessions, and returns those it refreshed,
	// each with the highest cursor of its courier's deliveries (0 for none). A session it did not refresh
	// was replaced or closed.
	BeatSessions(ctx context.Context, sessions []SessionRef, at time.Time) (map[SessionRef]int64, error)
	// DeliveriesWithTasks is Deliveries with, for each delivery, the task it names as read in the same
	// statement; the task of an offer delivery only while the task is offered to the delivery's courier
	// (otherwise the delivery is Superseded), so that a courier's replay does not read and decode, for
	// each offer that closed meanwhile, a task it will not send.
	DeliveriesWithTasks(ctx context.Context, courierID string, after int64, limit int) ([]DeliveryWithTask, error)
	// Connected returns which of courierIDs hold an open session with a heartbeat after since.
	Connected(ctx context.Context, courierIDs []string, since time.Time) (map[string]bool, error)
	// Command returns the stored outcome of courierID's command commandID; found false when none.
	Command(ctx context.Context, courierID, commandID string) (rec CommandRecord, found bool, err error)
	// SaveCommand stores a command's failed outcome (successes are stored by UpdateTask's Change). A
	// record with the same key that exists already is kept.
	SaveCommand(ctx context.Context, rec CommandRecord) error
	// Purge deletes what retention no longer keeps: acknowledged deliveries, deliveries and command
	// records older than before, and request ids of tasks created before requestsBefore.
	Purge(ctx context.Context, before time.Time) (int64, error)
	// CourierStates returns, in one read, what Connected(courierIDs, since), OfferOpen(courierIDs) and
	// HeldTasksOf(heldOf) would return.
	CourierStates(ctx context.Context, courierIDs []string, since time.Time, heldOf []string) (CourierStates, error)
}

// WaitingTask is a task waiting for its back-off, as Store.WaitingNear returns it: what a courier who
// may wake it must know of it (wake.go).
type WaitingTask struct {
	ID     string
	Pickup geo.LatLng
	// Size is the parcel's size (Task.Size), and Excluded the ids of the couriers never to be offered the
	// task again (Task.Excluded), in the task's order.
	Size     Size
	Excluded []string
}

// CourierStates is dispatch's own state of some couriers (Store.CourierStates).
type CourierStates struct {
	// Connected are the couriers holding an open session with a recent heartbeat, as Store.Connected.
	Connected map[string]bool
	// OfferOpen are the couriers with an open offer, as Store.OfferOpen.
	OfferOpen map[string]bool
	// Held are the tasks each courier holds, as Store.HeldTasksOf.
	Held map[string][]Task
}

// ErrTooManyOpenTasks is Store.CreateTaskCapped's refusal: the customer has as many open tasks as the
// cap allows.
var ErrTooManyOpenTasks = errors.New("too many open tasks")

// Event topics of the dispatch event feed.
const (
	// TopicTask is appended on every task write; key the task id, payload EncodeTaskEvent.
	TopicTask = "dispatch.task"
	// TopicDelivery is appended for every delivery; key the courier id; its sequence is the cursor.
	TopicDelivery = "dispatch.delivery"
	// TopicSession is appended when a courier's current session changes; key the courier id, payload the
	// new session id.
	TopicSession = "dispatch.session"
	// TopicWaiting is appended by a transaction that makes tasks wait for a courier (Change.Waiting); key
	// one of those tasks' id, no payload.
	TopicWaiting = "dispatch.waiting"
)
