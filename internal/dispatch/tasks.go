package dispatch

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"lastmile/internal/geo"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
)

// View says how much of a task a read returns.
type View string

// The views. Basic leaves out the history and the proofs, which grow with the task's life.
const (
	ViewBasic View = "basic"
	ViewFull  View = "full"
)

// CreateRequest is what a caller chooses of a new task.
type CreateRequest struct {
	RequestID         string
	Pickup, Dropoff   Stop
	Priority          Priority
	Size              Size
	Notes             string
	CustomerID        string
	ProofRequirements []ProofRequirement
	ParcelBarcode     string
}

// Request limits.
const (
	maxRequestID     = 64
	maxAddress       = 500
	maxInstructions  = 500
	maxContactName   = 200
	maxNotes         = 1000
	maxComment       = 500
	maxAppVersion    = 64
	maxBarcode       = 128
	maxRequirements  = 8
	deliveryCodeSize = 4
)

var phonePattern = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)

var (
	errTaskNotFound = apperr.Errorf(apperr.NotFound, "task not found")
	// errNoChange ends a closure that found nothing to change; the caller returns the task as read.
	errNoChange = errors.New("no change")
)

// staff reports whether p sees and manages every task: dispatchers, administrators and services.
func staff(p auth.Principal) bool {
	return p.Kind == auth.Service || p.HasRole(auth.RoleDispatcher) || p.HasRole(auth.RoleAdmin)
}

// actorOf returns who p is in a task's history.
func actorOf(p auth.Principal) (Actor, string) {
	switch {
	case p.HasRole(auth.RoleDispatcher) || p.HasRole(auth.RoleAdmin):
		return ActorDispatcher, p.Subject
	case p.HasRole(auth.RoleCourier):
		return ActorCourier, p.Subject
	case p.Kind == auth.User:
		return ActorCustomer, p.Subject
	}
	// A partner system acts for the customer.
	return ActorCustomer, ""
}

// CreateTask creates a task in state PENDING and hands it to the engine. It is idempotent by request id
// per caller: the same request again returns the task the first call created, in its current state; the
// same request id with other fields is Conflict (ALREADY_EXISTS).
func (s *Service) CreateTask(ctx context.Context, req CreateRequest) (Task, error) {
	p := auth.FromContext(ctx)
	if p.HasRole(auth.RoleCourier) {
		return Task{}, apperr.Errorf(apperr.PermissionDenied, "couriers cannot create tasks")
	}
	now := storedTime(s.now())
	var v violations
	if req.RequestID == "" || len(req.RequestID) > maxRequestID || !printableASCII.MatchString(req.RequestID) {
		v.add("request_id", "must be 1 to 64 printable ASCII characters")
	}
	req.CustomerID = v.optionalID("customer_id", req.CustomerID)
	switch {
	case p.Kind == auth.User && !staff(p):
		if req.CustomerID != "" && req.CustomerID != strings.ToLower(p.Subject) {
			return Task{}, apperr.Errorf(apperr.PermissionDenied, "customers create tasks for themselves only")
		}
		req.CustomerID = strings.ToLower(p.Subject)
	case req.CustomerID == "" && len(v) == 0:
		v.add("customer_id", "is required when a dispatcher, an administrator or a partner system creates a task")
	}
	v.stop("pickup", &req.Pickup, now)
	v.stop("dropoff", &req.Dropoff, now)
	if req.Pickup.Window != nil && req.Dropoff.Window != nil && !req.Dropoff.Window.End.After(req.Pickup.Window.Start) {
		v.add("dropoff.time_window.end_time", "must be after pickup.time_window.start_time")
	}
	if req.Priority == "" {
		req.Priority = PriorityNormal
	} else if req.Priority.Rank() == 0 {
		v.add("priority", "must be a defined priority")
	}
	if req.Size == "" {
		req.Size = SizeSmall
	} else if len(req.Size.Modes()) == 0 {
		v.add("size", "must be a defined parcel size")
	}
	v.text("notes", req.Notes, maxNotes, false, false)
	if req.ParcelBarcode != "" && (len(req.ParcelBarcode) > maxBarcode || !printableASCII.MatchString(req.ParcelBarcode)) {
		v.add("parcel_barcode", "must be 1 to 128 printable ASCII characters")
	}
	v.requirements(req.ProofRequirements, req.ParcelBarcode)
	if err := v.err(); err != nil {
		return Task{}, err
	}
	if !(p.Kind == auth.User && !staff(p)) {
		if err := s.isCustomer(ctx, req.CustomerID); err != nil {
			return Task{}, err
		}
	}

	actor, actorUser := actorOf(p)
	t := Task{
		ID:                newID(),
		CustomerID:        req.CustomerID,
		CreatedBy:         p.Kind.String() + ":" + strings.ToLower(p.Subject),
		RequestID:         req.RequestID,
		RequestHash:       requestHash(req),
		State:             StatePending,
		Pickup:            req.Pickup,
		Dropoff:           req.Dropoff,
		Priority:          req.Priority,
		Size:              req.Size,
		Notes:             req.Notes,
		ProofRequirements: req.ProofRequirements,
		ParcelBarcode:     req.ParcelBarcode,
		History:           []StateChange{{State: StatePending, At: now, Actor: actor, ActorUserID: actorUser}},
		CreateTime:        now,
		UpdateTime:        now,
		DueTime:           now,
		SearchStart:       now,
	}
	for _, r := range req.ProofRequirements {
		if r.Kind == ProofCode {
			t.DeliveryCode = newDeliveryCode()
		}
	}
	out, created, err := s.store.CreateTaskCapped(ctx, t, int64(s.opts.MaxOpenTasks))
	if errors.Is(err, ErrTooManyOpenTasks) {
		return Task{}, apperr.Errorf(apperr.ResourceExhausted, "customer %s already has %d open tasks, the most allowed: wait for some to finish, or cancel some",
			t.CustomerID, s.opts.MaxOpenTasks)
	}
	if err != nil {
		return Task{}, fmt.Errorf("create task: %w", err)
	}
	if !created && out.RequestHash != t.RequestHash {
		return Task{}, apperr.Errorf(apperr.Conflict, "request_id %q was already used with different fields (task %s)", req.RequestID, out.ID)
	}
	if created {
		s.fresh.add(out, s.opts.Batch)
		s.kick()
	}
	return out.For(p, "", ViewFull), nil
}

// isCustomer returns FailedPrecondition unless userID names an active customer account: a task created
// by staff or a partner system for anyone else (an unknown id, a suspended or deleted customer, a courier
// or a dispatcher) would be a task no customer can see. The standing is read from the accounts
// (Deps.Accounts), as mayWork reads a courier's; Unavailable when it cannot be read.
func (s *Service) isCustomer(ctx context.Context, userID string) error {
	if s.accounts == nil {
		return nil
	}
	st, err := s.accounts.State(ctx, userID)
	if err != nil {
		return fmt.Errorf("check the account of customer %s: %w", userID, err)
	}
	if !st.Active || !slices.Contains(st.Roles, auth.RoleCustomer) {
		return apperr.Errorf(apperr.FailedPrecondition, "customer_id %s is not an active customer account", userID)
	}
	return nil
}

// stop checks a stop and normalises its times.
func (v *violations) stop(field string, st *Stop, now time.Time) {
	if !st.Location.Valid() {
		v.add(field+".location", "must be a valid latitude and longitude")
	}
	v.text(field+".address", st.Address, maxAddress, true, true)
	v.text(field+".instructions", st.Instructions, maxInstructions, false, false)
	v.text(field+".contact.name", st.Contact.Name, maxContactName, false, true)
	if st.Contact.Phone != "" && !phonePattern.MatchString(st.Contact.Phone) {
		v.add(field+".contact.phone", "must be an E.164 phone number such as +4915112345678")
	}
	if w := st.Window; w != nil {
		w.Start, w.End = storedTime(w.Start), storedTime(w.End)
		v.timeInRange(field+".time_window.start_time", w.Start)
		v.timeInRange(field+".time_window.end_time", w.End)
		switch {
		case !w.End.After(w.Start):
			v.add(field+".time_window", "end_time must be after start_time")
		case !w.End.After(now):
			v.add(field+".time_window.end_time", "has already passed")
		case w.Start.After(now.Add(MaxWindowAhead)):
			v.add(field+".time_window.start_time", "must be at most 30 days ahead")
		}
	}
}

// requirements checks proof requirements: defined kinds, stages and policies, one per kind and stage, a
// barcode only with a parcel barcode to compare with, a code only at the dropoff.
func (v *violations) requirements(rs []ProofRequirement, barcode string) {
	if len(rs) > maxRequirements {
		v.add("proof_requirements", fmt.Sprintf("must have at most %d entries", maxRequirements))
		return
	}
	seen := map[[2]string]bool{}
	for i := range rs {
		r := &rs[i]
		f := fmt.Sprintf("proof_requirements[%d]", i)
		switch r.Kind {
		case ProofPhoto, ProofSignature, ProofBarcode, ProofCode:
		default:
			v.add(f+".kind", "must be a defined proof kind")
		}
		if r.Stage != StagePickup && r.Stage != StageDropoff {
			v.add(f+".stage", "must be PICKUP or DROPOFF")
		}
		if r.Policy == "" {
			r.Policy = ProofRequired
		} else if r.Policy != ProofRequired && r.Policy != ProofOptional {
			v.add(f+".policy", "must be REQUIRED or OPTIONAL")
		}
		if r.Kind == ProofBarcode && barcode == "" {
			v.add(f+".kind", "a barcode proof needs parcel_barcode")
		}
		if r.Kind == ProofCode && r.Stage == StagePickup {
			v.add(f+".stage", "a one-time code is given by the recipient, at the dropoff")
		}
		key := [2]string{string(r.Kind), string(r.Stage)}
		if seen[key] {
			v.add(f, "repeats a kind and stage")
		}
		seen[key] = true
	}
}

// requestHash fingerprints what a create request asks for, to tell a retry from a reuse of its id.
func requestHash(req CreateRequest) string {
	b, err := json.Marshal(req)
	if err != nil {
		panic(err) // plain data: cannot fail
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// newDeliveryCode returns a random four-digit code.
func newDeliveryCode() string {
	n, err := rand.Int(rand.Reader, big.NewInt(10000))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return fmt.Sprintf("%0*d", deliveryCodeSize, n.Int64())
}

// GetTask returns a task the caller may see, redacted for them. NotFound when there is none or the
// caller may not see it.
func (s *Service) GetTask(ctx context.Context, id string, view View) (Task, error) {
	if view == "" {
		view = ViewFull
	}
	t, err := s.visibleTask(ctx, id)
	if err != nil {
		return Task{}, err
	}
	cid, _ := s.callerCourierID(ctx)
	return t.For(auth.FromContext(ctx), cid, view), nil
}

// visibleTask returns the task with id when the caller may see it (unredacted: callers redact), NotFound
// otherwise. Anonymous callers, whom the policy lets reach GetTask and WatchTask for share links, are
// Unauthenticated.
func (s *Service) visibleTask(ctx context.Context, id string) (Task, error) {
	if auth.FromContext(ctx).Kind == auth.Anonymous {
		return Task{}, apperr.Errorf(apperr.Unauthenticated, "authentication required: sign in, or follow a share link")
	}
	var v violations
	id = v.id("id", id)
	if err := v.err(); err != nil {
		return Task{}, err
	}
	t, err := s.store.GetTask(ctx, id)
	if err != nil {
		return Task{}, notFoundOr(err, "get task "+id)
	}
	p := auth.FromContext(ctx)
	cid, err := s.callerCourierID(ctx)
	if err != nil {
		return Task{}, err
	}
	if !canSee(p, t, cid) {
		return Task{}, errTaskNotFound
	}
	return t, nil
}

// canSee reports whether p may see t: staff every task, customers their own, couriers the tasks they
// hold, held or were offered. courierID is the caller's courier id, empty when they have no profile.
func canSee(p auth.Principal, t Task, courierID string) bool {
	switch {
	case staff(p):
		return true
	case p.HasRole(auth.RoleCourier):
		if courierID == "" {
			return false
		}
		if t.CourierID == courierID {
			return true
		}
		for _, o := range t.Offers {
			if o.CourierID == courierID {
				return true
			}
		}
		for _, h := range t.History {
			if h.CourierID == courierID && h.State.Held() {
				return true
			}
		}
		return false
	case p.Kind == auth.User:
		return strings.EqualFold(t.CustomerID, p.Subject)
	}
	return false
}

func notFoundOr(err error, what string) error {
	if apperr.CodeOf(err) == apperr.NotFound {
		return errTaskNotFound
	}
	return fmt.Errorf("%s: %w", what, err)
}

// For returns t as p may read it, in view. Couriers never see the delivery code, other couriers' offers,
// the excluded couriers or another holder, nor the history entries about other couriers but the task's
// progress (courierHistory), and see stop contacts and instructions only while they hold the task;
// customers see neither the open offer nor who was offered the task, nor the history entries about
// couriers other than its holder (customerHistory).
func (t Task) For(p auth.Principal, courierID string, view View) Task {
	out := t.Clone()
	out.Excluded = nil
	out.RequestHash = ""
	if view == ViewBasic {
		out.History = nil
		out.Proofs = nil
	}
	switch {
	case staff(p):
	case p.HasRole(auth.RoleCourier):
		out.DeliveryCode = ""
		if t.CourierID != courierID {
			out.CourierID = "" // another courier holds (or last held) it
		}
		if !(t.State.Held() && t.CourierID == courierID) {
			out.Pickup.Contact, out.Pickup.Instructions = Contact{}, ""
			out.Dropoff.Contact, out.Dropoff.Instructions = Contact{}, ""
		}
		out.Offers = slicesFilter(out.Offers, func(o Offer) bool { return o.CourierID == courierID })
		out.History = courierHistory(out.History, t, courierID)
	default:
		out.Offers = nil
		out.History = customerHistory(out.History, t)
	}
	return out
}

// HolderVisibleTo reports whether p, who may see t (canSee), may also follow t's holder: the holder's
// position and ETA (WatchTask). Staff and the task's customer may; a courier only while they hold t
// themselves, since another holder is not theirs to know (For hides the holder's id from them too).
func (t Task) HolderVisibleTo(p auth.Principal, courierID string) bool {
	if !staff(p) && p.HasRole(auth.RoleCourier) {
		return courierID != "" && t.CourierID == courierID
	}
	return true
}

// customerHistory is history, a copy of t's, as t's customer sees it: without the entries about couriers
// other than the one who holds (or last held) t, such as other couriers' offers, their declines and
// expiries, and hand-backs. The open offer's entry stays, since it is t's state, but no offer entry says
// to whom, and only the customer's own user id is kept.
func customerHistory(history []StateChange, t Task) []StateChange {
	out := history[:0]
	for i, h := range history {
		open := t.State == StateOffered && i == len(history)-1
		if h.CourierID != "" && h.CourierID != t.CourierID && !open {
			continue
		}
		if h.State == StateOffered || (h.State == StatePending && h.Actor == ActorCourier) {
			h.CourierID, h.OfferID = "", ""
		}
		if h.Actor != ActorCustomer {
			h.ActorUserID = ""
		}
		out = append(out, h)
	}
	return out
}

// courierHistory is history, a copy of t's, as courier courierID sees it: their own entries in full
// (their offers, declines, expiries, hand-backs, holding the task), the entries that concern no courier
// (creation, the pickup window closing, a cancellation of a task nobody held) without the user ids, and of
// the entries about other couriers only the task's progress with the courier who holds (or last held) it
// and the open offer's entry: the offer, the assignment, the pickup, the delivery, the failure and the
// cancellation, each without the courier, offer, user id and comment. Other couriers' offers, declines,
// expiries and hand-backs, and every other courier's comment, are left out.
func courierHistory(history []StateChange, t Task, courierID string) []StateChange {
	out := history[:0]
	for i, h := range history {
		switch {
		case h.CourierID == courierID:
		case h.CourierID == "":
			h.ActorUserID = ""
		default:
			open := t.State == StateOffered && i == len(history)-1
			if (h.CourierID != t.CourierID && !open) || h.State == StatePending {
				continue
			}
			h.CourierID, h.OfferID, h.ActorUserID, h.Comment = "", "", "", ""
		}
		out = append(out, h)
	}
	return out
}

func slicesFilter[T any](in []T, keep func(T) bool) []T {
	var out []T
	for _, x := range in {
		if keep(x) {
			out = append(out, x)
		}
	}
	return out
}

// callerCourierID returns the courier id of a caller with role courier (cached for a minute), "" for
// other callers. A courier without a profile gets "" too: they see no task.
func (s *Service) callerCourierID(ctx context.Context) (string, error) {
	p := auth.FromContext(ctx)
	if !p.HasRole(auth.RoleCourier) {
		return "", nil
	}
	id, err := s.callerCourier(ctx)
	if apperr.CodeOf(err) == apperr.FailedPrecondition {
		return "", nil
	}
	return id, err
}

// callerCourier returns the courier id of the calling courier user: FailedPrecondition when they have no
// courier profile, PermissionDenied when the caller is not a courier.
func (s *Service) callerCourier(ctx context.Context) (string, error) {
	p := auth.FromContext(ctx)
	if !p.HasRole(auth.RoleCourier) {
		return "", apperr.Errorf(apperr.PermissionDenied, "only couriers hold courier sessions and tasks")
	}
	user := strings.ToLower(p.Subject)
	id, err := s.courierOfUser(ctx, user)
	switch apperr.CodeOf(err) {
	case "":
	case apperr.NotFound:
		return "", apperr.Errorf(apperr.FailedPrecondition, "user %s has no courier profile", user)
	default:
		return "", fmt.Errorf("find courier of user %s: %w", user, err)
	}
	return id, nil
}

// courierOfUser returns the id of user's courier profile, from the cache or the courier service.
// NotFound when the user has none.
func (s *Service) courierOfUser(ctx context.Context, user string) (string, error) {
	now := s.now()
	if e, ok := s.courierIDs.Load(user); ok {
		if c := e.(courierIDEntry); now.Before(c.until) {
			return c.id, nil
		}
	}
	id, err := s.couriers.CourierOfUser(ctx, user)
	if err != nil {
		return "", err
	}
	s.courierIDs.Store(user, courierIDEntry{id: id, until: now.Add(time.Minute)})
	return id, nil
}

type courierIDEntry struct {
	id    string
	until time.Time
}

// courierIDCache maps user ids to courier ids; a user's courier never changes (courier profiles are linked
// to one user for good), so the minute only bounds memory churn for deleted profiles.
type courierIDCache = sync.Map

// ListRequest is one page of ListTasks.
type ListRequest struct {
	PageSize  int
	PageToken string
	Filter    TaskFilter
	View      View
}

// TaskPage is one page of tasks.
type TaskPage struct {
	Tasks         []Task
	NextPageToken string
	// Total counts every matching task across pages.
	Total int
}

type pageToken struct {
	CreateTime time.Time `json:"c"`
	ID         string    `json:"i"`
	Filter     string    `json:"f"`
}

// ListTasks returns the tasks matching req.Filter the caller may see, newest first. Customers see only
// their own tasks and couriers only those they hold or held: an empty customer (courier) filter means
// their own id, another id is PermissionDenied.
func (s *Service) ListTasks(ctx context.Context, req ListRequest) (TaskPage, error) {
	if req.View == "" {
		req.View = ViewBasic
	}
	f, err := s.scopeFilter(ctx, req.Filter)
	if err != nil {
		return TaskPage{}, err
	}
	size := req.PageSize
	switch {
	case size < 0 || size > MaxPageSize:
		return TaskPage{}, apperr.InvalidRequest(apperr.FieldViolation{Field: "page_size", Description: "must be between 0 and 1000"})
	case size == 0:
		size = DefaultPageSize
	}
	q := TaskQuery{Filter: f, Limit: size + 1}
	fkey := filterKey(f)
	if req.PageToken != "" {
		tok, ok := decodePageToken(req.PageToken)
		if !ok || tok.Filter != fkey {
			return TaskPage{}, apperr.InvalidRequest(apperr.FieldViolation{Field: "page_token", Description: "is malformed or was issued for different filters"})
		}
		q.AfterCreate, q.AfterID = tok.CreateTime, tok.ID
	}
	tasks, err := s.store.ListTasks(ctx, q)
	if err != nil {
		return TaskPage{}, fmt.Errorf("list tasks: %w", err)
	}
	total, err := s.store.CountTasks(ctx, f)
	if err != nil {
		return TaskPage{}, fmt.Errorf("count tasks: %w", err)
	}
	page := TaskPage{Total: total}
	if len(tasks) > size {
		tasks = tasks[:size]
		last := tasks[len(tasks)-1]
		page.NextPageToken = encodePageToken(pageToken{CreateTime: last.CreateTime, ID: last.ID, Filter: fkey})
	}
	p := auth.FromContext(ctx)
	cid, _ := s.callerCourierID(ctx)
	for _, t := range tasks {
		page.Tasks = append(page.Tasks, t.For(p, cid, req.View))
	}
	return page, nil
}

// scopeFilter validates f and narrows it to what the caller may see.
func (s *Service) scopeFilter(ctx context.Context, f TaskFilter) (TaskFilter, error) {
	var v violations
	f.CourierID = v.optionalID("courier_id", f.CourierID)
	f.CustomerID = v.optionalID("customer_id", f.CustomerID)
	for i, st := range f.States {
		if !st.Valid() {
			v.add(fmt.Sprintf("states[%d]", i), "must be a defined task state")
		}
	}
	if err := v.err(); err != nil {
		return f, err
	}
	p := auth.FromContext(ctx)
	switch {
	case staff(p):
	case p.HasRole(auth.RoleCourier):
		cid, err := s.callerCourier(ctx)
		if err != nil {
			return f, err
		}
		if f.CourierID != "" && f.CourierID != cid {
			return f, apperr.Errorf(apperr.PermissionDenied, "couriers see only their own tasks")
		}
		f.CourierID, f.AnyHolder = cid, true // the tasks they hold or held, also those no longer theirs
	case p.Kind == auth.User:
		me := strings.ToLower(p.Subject)
		if f.CustomerID != "" && f.CustomerID != me {
			return f, apperr.Errorf(apperr.PermissionDenied, "customers see only their own tasks")
		}
		f.CustomerID = me
	default:
		return f, apperr.Errorf(apperr.PermissionDenied, "permission denied")
	}
	return f, nil
}

// filterKey fingerprints a scoped filter for page tokens. States are a set: their order does not count,
// so a token works for the same states listed in another order.
func filterKey(f TaskFilter) string {
	f.States = slices.Sorted(slices.Values(f.States))
	b, _ := json.Marshal(f)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

func encodePageToken(t pageToken) string {
	b, _ := json.Marshal(t)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodePageToken(s string) (pageToken, bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return pageToken{}, false
	}
	var t pageToken
	if json.Unmarshal(b, &t) != nil || t.ID == "" || t.CreateTime.IsZero() {
		return pageToken{}, false
	}
	if _, ok := normalizeID(t.ID); !ok {
		return pageToken{}, false
	}
	return t, true
}

// CancelRequest cancels a task.
type CancelRequest struct {
	ID      string
	Reason  CancelReason
	Comment string
	ETag    string
}

// CancelTask cancels a task that was not picked up. Its open offer is withdrawn and a holder is released
// and told. Cancelling a cancelled task returns it unchanged.
func (s *Service) CancelTask(ctx context.Context, req CancelRequest) (Task, error) {
	p := auth.FromContext(ctx)
	if p.HasRole(auth.RoleCourier) {
		return Task{}, apperr.Errorf(apperr.PermissionDenied, "couriers cannot cancel tasks; report a failure or hand the task back")
	}
	var v violations
	switch req.Reason {
	case CancelCustomerRequest, CancelDuplicate, CancelIncorrectDetails, CancelNoCourier, CancelOther:
	default:
		v.add("reason", "must be a defined cancel reason")
	}
	v.text("comment", req.Comment, maxComment, false, false)
	if len(req.ETag) > 128 {
		v.add("etag", "must be at most 128 characters")
	}
	if err := v.err(); err != nil {
		return Task{}, err
	}
	if _, err := s.visibleTask(ctx, req.ID); err != nil {
		return Task{}, err
	}
	actor, actorUser := actorOf(p)
	var (
		unchanged Task
		withdrawn bool
	)
	// A retry of this very cancellation (same caller, reason and comment) whose answer was lost.
	own := func(t Task) func(StateChange) bool {
		return func(h StateChange) bool {
			return t.State == StateCancelled && t.CancelReason == req.Reason && h.State == StateCancelled &&
				h.Actor == actor && h.ActorUserID == actorUser && h.Comment == req.Comment
		}
	}
	t, err := s.store.UpdateTask(ctx, strings.ToLower(req.ID), func(t Task) (Change, error) {
		withdrawn = false
		if err := checkETag(t, req.ETag); err != nil {
			if retried(t, req.ETag, own(t)) {
				unchanged = t
				return Change{}, errNoChange
			}
			return Change{}, err
		}
		if t.State == StateCancelled {
			unchanged = t
			return Change{}, errNoChange
		}
		if !CanTransition(t.State, StateCancelled) {
			return Change{}, apperr.Errorf(apperr.FailedPrecondition, "task %s is %s: only tasks not yet picked up can be cancelled", t.ID, t.State)
		}
		now := s.now()
		var ch Change
		if o := t.closeOffer(OfferWithdrawn, now); o != nil {
			ch.Deliveries = append(ch.Deliveries, Delivery{CourierID: o.CourierID, Kind: DeliveryOfferClosed, TaskID: t.ID, OfferID: o.ID})
			withdrawn = true
		}
		holder := ""
		if t.State == StateAssigned {
			holder = t.CourierID
		}
		if err := t.transition(StateChange{State: StateCancelled, At: now, Actor: actor, ActorUserID: actorUser, CourierID: holder, Comment: req.Comment}); err != nil {
			return Change{}, err
		}
		t.CancelReason = req.Reason
		if holder != "" {
			t.CourierID = holder
			ch.Jobs = append(ch.Jobs, Job{Kind: JobRelease, CourierID: holder, TaskID: t.ID, Final: true})
			ch.Deliveries = append(ch.Deliveries, Delivery{CourierID: holder, Kind: DeliveryTask, TaskID: t.ID, Reason: NoticeCancelled})
		}
		ch.Task = t
		return ch, nil
	})
	if errors.Is(err, errNoChange) {
		t = unchanged
	} else if err != nil {
		return Task{}, taskErr(err, "cancel task "+req.ID)
	} else if withdrawn {
		s.metrics.OfferAnswered(OfferWithdrawn)
		s.courierFreed()
	}
	return t.For(p, "", ViewFull), nil
}

// taskErr maps a store's NotFound to the task's and wraps anything else with what.
func taskErr(err error, what string) error {
	if apperr.CodeOf(err) == apperr.NotFound {
		return errTaskNotFound
	}
	if apperr.As(err) != nil {
		return err
	}
	return fmt.Errorf("%s: %w", what, err)
}

// AssignRequest gives a task to a courier of the dispatcher's choosing.
type AssignRequest struct {
	ID, CourierID, Comment, ETag string
}

// AssignTask lets a dispatcher give a task to a courier, overriding the engine: the task becomes ASSIGNED
// to that courier at once, the courier's capacity is claimed (a durable job) and the courier is told. An
// open offer is withdrawn; a previous holder is released and told. The override is recorded as a decision.
func (s *Service) AssignTask(ctx context.Context, req AssignRequest) (Task, error) {
	p := auth.FromContext(ctx)
	if !(p.HasRole(auth.RoleDispatcher) || p.HasRole(auth.RoleAdmin)) {
		return Task{}, apperr.Errorf(apperr.PermissionDenied, "only dispatchers and administrators assign tasks")
	}
	var v violations
	id := v.id("id", req.ID)
	courierID := v.id("courier_id", req.CourierID)
	v.text("comment", req.Comment, maxComment, false, false)
	if len(req.ETag) > 128 {
		v.add("etag", "must be at most 128 characters")
	}
	if err := v.err(); err != nil {
		return Task{}, err
	}
	cur, err := s.store.GetTask(ctx, id)
	if err != nil {
		return Task{}, taskErr(err, "get task "+id)
	}
	actor, actorUser := actorOf(p)
	// A retry of this very assignment (same dispatcher, courier and comment) whose answer was lost.
	own := func(t Task) func(StateChange) bool {
		return func(h StateChange) bool {
			return t.State == StateAssigned && t.CourierID == courierID && h.State == StateAssigned &&
				h.CourierID == courierID && h.Actor == actor && h.ActorUserID == actorUser && h.Comment == req.Comment
		}
	}
	if cur.State == StateAssigned && cur.CourierID == courierID && (req.ETag == "" || retried(cur, req.ETag, own(cur))) {
		return cur.For(p, "", ViewFull), nil
	}
	c, err := s.couriers.Status(ctx, courierID)
	switch apperr.CodeOf(err) {
	case "":
	case apperr.NotFound:
		return Task{}, apperr.Errorf(apperr.NotFound, "courier %s not found", courierID)
	default:
		return Task{}, fmt.Errorf("get courier %s: %w", courierID, err)
	}
	if err := s.mayWork(ctx, courierID); err != nil {
		return Task{}, err
	}
	if err := canTake(c, cur); err != nil {
		return Task{}, err
	}
	// A picked-up task moves only away from a courier who may no longer work (their account suspended,
	// deleted or without the courier role): the parcel is with them, the dispatcher recovers it and
	// gives the task to a courier who collects it.
	strandedBy := ""
	if cur.State == StatePickedUp {
		switch err := s.mayWork(ctx, cur.CourierID); apperr.CodeOf(err) {
		case "":
		case apperr.FailedPrecondition:
			strandedBy = cur.CourierID
		default:
			return Task{}, err
		}
	}
	now := s.now()
	var (
		unchanged Task
		// closed: the change withdrew an open offer; withdrawn: an offer to another courier, now free.
		closed, withdrawn bool
	)
	t, err := s.store.UpdateTask(ctx, id, func(t Task) (Change, error) {
		closed, withdrawn = false, false
		if err := checkETag(t, req.ETag); err != nil {
			if retried(t, req.ETag, own(t)) {
				unchanged = t
				return Change{}, errNoChange
			}
			return Change{}, err
		}
		if t.State == StateAssigned && t.CourierID == courierID {
			unchanged = t
			return Change{}, errNoChange
		}
		stranded := t.State == StatePickedUp && strandedBy != "" && t.CourierID == strandedBy
		if !CanTransition(t.State, StateAssigned) || (t.State == StatePickedUp && !stranded) {
			return Change{}, apperr.Errorf(apperr.FailedPrecondition, "task %s is %s: only tasks not yet picked up can be assigned, and picked-up tasks whose courier can no longer work", t.ID, t.State)
		}
		var ch Change
		if o := t.closeOffer(OfferWithdrawn, now); o != nil {
			ch.Deliveries = append(ch.Deliveries, Delivery{CourierID: o.CourierID, Kind: DeliveryOfferClosed, TaskID: t.ID, OfferID: o.ID})
			closed, withdrawn = true, o.CourierID != courierID
		}
		prev := ""
		if t.State.Held() {
			prev = t.CourierID
			ch.Deliveries = append(ch.Deliveries, Delivery{CourierID: prev, Kind: DeliveryTask, TaskID: t.ID, Reason: NoticeReassigned})
		}
		if err := t.transition(StateChange{State: StateAssigned, At: now, Actor: actor, ActorUserID: actorUser, CourierID: courierID, Comment: req.Comment}); err != nil {
			return Change{}, err
		}
		d := &Decision{
			ID: newID(), TaskID: t.ID, DecideTime: storedTime(now), Trigger: TriggerOverride, Outcome: OutcomeDispatcherAssigned,
			Weights: s.opts.Weights, Winner: courierID, Rationale: overrideRationale(req.Comment),
			Candidates: []Candidate{{CourierID: courierID, Rank: 1, Mode: c.Mode, Location: fixLocation(c.Fix)}},
		}
		ch.Decision = d
		ch.Jobs = append(ch.Jobs, Job{Kind: JobClaim, CourierID: courierID, TaskID: t.ID, ExpectedRelease: expectedRelease(t, now), Previous: prev})
		ch.Deliveries = append(ch.Deliveries, Delivery{CourierID: courierID, Kind: DeliveryTask, TaskID: t.ID, Reason: NoticeAssigned})
		ch.Task = t
		return ch, nil
	})
	if errors.Is(err, errNoChange) {
		t = unchanged
	} else if err != nil {
		return Task{}, taskErr(err, "assign task "+id)
	} else {
		s.logger.Info("dispatch decision", "task", t.ID, "trigger", TriggerOverride, "outcome", OutcomeDispatcherAssigned, "winner", courierID, "dispatcher", actorUser)
		if closed {
			s.metrics.OfferAnswered(OfferWithdrawn)
		}
		if withdrawn {
			s.courierFreed()
		}
	}
	return t.For(p, "", ViewFull), nil
}

func overrideRationale(comment string) string {
	if comment == "" {
		return "assigned by a dispatcher"
	}
	return "assigned by a dispatcher: " + comment
}

func fixLocation(f *Fix) geo.LatLng {
	if f == nil {
		return geo.LatLng{}
	}
	return f.Location
}

// mayWork returns FailedPrecondition when the identity user behind courierID may no longer work: the
// account is suspended or deleted, or no longer holds the courier role. The courier service does not know
// (a profile outlives its user's suspension, and keeps its status), so the user's standing is read from
// the accounts (Deps.Accounts), which identity keeps current on every replica. Unavailable when either
// cannot be read.
func (s *Service) mayWork(ctx context.Context, courierID string) error {
	if s.accounts == nil {
		return nil
	}
	user, err := s.couriers.UserOfCourier(ctx, courierID)
	switch apperr.CodeOf(err) {
	case "":
	case apperr.NotFound:
		return apperr.Errorf(apperr.NotFound, "courier %s not found", courierID)
	default:
		return fmt.Errorf("get the user of courier %s: %w", courierID, err)
	}
	why, err := s.barred(ctx, user)
	if err != nil {
		return fmt.Errorf("check the account of courier %s: %w", courierID, err)
	}
	if why != "" {
		return apperr.Errorf(apperr.FailedPrecondition, "courier %s cannot take tasks: %s", courierID, why)
	}
	return nil
}

// barred returns why identity user userID may not work as a courier ("their account is suspended or
// deleted", "their account no longer has the courier role"), "" when they may. Only with Deps.Accounts.
func (s *Service) barred(ctx context.Context, userID string) (string, error) {
	st, err := s.accounts.State(ctx, userID)
	if err != nil {
		return "", err
	}
	return barredBy(st), nil
}

// canTake returns FailedPrecondition when courier c cannot take t: not available, no free capacity, or a
// transport mode that cannot carry the parcel.
func canTake(c CourierInfo, t Task) error {
	switch {
	case c.Status != CourierAvailable:
		return apperr.Errorf(apperr.FailedPrecondition, "courier %s is %s, not available", c.ID, c.Status)
	case c.ActiveTasks >= c.Capacity:
		return apperr.Errorf(apperr.FailedPrecondition, "courier %s has no free capacity (%d of %d)", c.ID, c.ActiveTasks, c.Capacity)
	case !t.Size.Carries(c.Mode):
		return apperr.Errorf(apperr.FailedPrecondition, "courier %s travels by %s, which cannot carry a %s parcel", c.ID, c.Mode, t.Size)
	}
	return nil
}

// expectedRelease is when a claim for t is expected to end: the end of the dropoff window, or two hours
// from now without one.
func expectedRelease(t Task, now time.Time) time.Time {
	if w := t.Dropoff.Window; w != nil && w.End.After(now) {
		return w.End
	}
	return storedTime(now.Add(2 * time.Hour))
}

// Explanation is a task's recorded assignment decisions.
type Explanation struct {
	TaskID    string
	State     State
	Decisions []Decision
}

// ExplainAssignment returns a task's newest decisions (at most MaxDecisions), with what became of each
// offer. Dispatchers and administrators only.
func (s *Service) ExplainAssignment(ctx context.Context, id string) (Explanation, error) {
	p := auth.FromContext(ctx)
	if !staff(p) {
		return Explanation{}, apperr.Errorf(apperr.PermissionDenied, "only dispatchers and administrators read assignment explanations")
	}
	t, err := s.visibleTask(ctx, id)
	if err != nil {
		return Explanation{}, err
	}
	ds, err := s.store.Decisions(ctx, t.ID, MaxDecisions)
	if err != nil {
		return Explanation{}, fmt.Errorf("read decisions of task %s: %w", t.ID, err)
	}
	for i := range ds {
		for j := range ds[i].Candidates {
			c := &ds[i].Candidates[j]
			if o := t.Offer(c.OfferID); o != nil {
				c.OfferState, c.DeclineReason = o.State, o.DeclineReason
			}
		}
	}
	return Explanation{TaskID: t.ID, State: t.State, Decisions: ds}, nil
}

// Overview is one courier's live state with the tasks they hold and the offers waiting for them.
type Overview struct {
	Courier CourierInfo
	Tasks   []Task
	Offers  []Offer
}

// CourierOverview returns a courier's overview: couriers their own (another courier's is NotFound),
// dispatchers and administrators any; customers PermissionDenied.
func (s *Service) CourierOverview(ctx context.Context, courierID string) (Overview, error) {
	var v violations
	courierID = v.id("courier_id", courierID)
	if err := v.err(); err != nil {
		return Overview{}, err
	}
	p := auth.FromContext(ctx)
	switch {
	case staff(p):
	case p.HasRole(auth.RoleCourier):
		own, err := s.callerCourierID(ctx)
		if err != nil {
			return Overview{}, err
		}
		if own != courierID {
			return Overview{}, apperr.Errorf(apperr.NotFound, "courier %s not found", courierID)
		}
	default:
		return Overview{}, apperr.Errorf(apperr.PermissionDenied, "only couriers, dispatchers and administrators read courier overviews")
	}
	c, err := s.couriers.Status(ctx, courierID)
	if err != nil {
		if apperr.CodeOf(err) == apperr.NotFound {
			return Overview{}, apperr.Errorf(apperr.NotFound, "courier %s not found", courierID)
		}
		return Overview{}, fmt.Errorf("get courier %s: %w", courierID, err)
	}
	held, err := s.store.HeldTasks(ctx, courierID)
	if err != nil {
		return Overview{}, fmt.Errorf("read tasks of courier %s: %w", courierID, err)
	}
	offered, err := s.store.OfferedTasks(ctx, courierID)
	if err != nil {
		return Overview{}, fmt.Errorf("read offers of courier %s: %w", courierID, err)
	}
	out := Overview{Courier: c}
	for _, t := range held {
		out.Tasks = append(out.Tasks, t.For(p, courierID, ViewBasic))
	}
	for _, t := range offered {
		if o := t.CurrentOffer(); o != nil {
			out.Offers = append(out.Offers, *o)
		}
	}
	return out, nil
}
