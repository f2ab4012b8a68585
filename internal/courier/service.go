package courier

import (
	"context"
	"encoding/base64"
	"fmt"
	"hash/maphash"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
)

// UserInfo is what the courier service needs to know about an identity user.
type UserInfo struct {
	ID string
	// Role is one of the auth.Role* names.
	Role string
	// Status is "active", "suspended" or "deleted"; only active users can become couriers.
	Status      string
	DisplayName string
}

// UserActive is the UserInfo.Status of a user who may log in.
const UserActive = "active"

// Users looks up identity users. The identity service's gRPC client implements it.
type Users interface {
	// GetUser returns the user with id. NotFound when there is none; Unavailable when identity cannot be
	// reached.
	GetUser(ctx context.Context, id string) (UserInfo, error)
}

// Defaults of Options.
const (
	DefaultFlushInterval  = 2 * time.Second
	DefaultFlushBatch     = 1000
	DefaultFixesPerSecond = 10
	DefaultFixBurst       = 100
	DefaultMaxClockSkew   = 30 * time.Second
	DefaultMaxFixAge      = 10 * time.Minute
)

// Contract limits.
const (
	// MaxDisplayNameLen bounds display names, in characters.
	MaxDisplayNameLen = 100
	// DefaultPageSize and MaxPageSize bound ListCouriers pages.
	DefaultPageSize = 50
	MaxPageSize     = 1000
	// AvailabilityHorizon is how far ahead hour slots may be changed.
	AvailabilityHorizon = 90 * 24 * time.Hour
	// MaxAvailabilityRange bounds SetAvailability's hours and GetAvailability's range (31 days).
	MaxAvailabilityRange = 744 * time.Hour
	// MaxFixesPerReport bounds the fixes of one ReportLocations message.
	MaxFixesPerReport = 100
)

// Options configures a Service. The zero value is usable: the defaults above and the wall clock.
type Options struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives flush failures; nil means slog.Default().
	Logger *slog.Logger
	// FlushInterval is how often accepted locations are persisted; a crash loses at most this window.
	FlushInterval time.Duration
	// FlushBatch makes the flusher persist early once this many couriers have unsaved locations.
	FlushBatch int
	// FixesPerSecond and FixBurst are the per-courier token bucket for location fixes. Fixes over it are
	// rejected as RATE_LIMITED.
	FixesPerSecond float64
	FixBurst       int
	// MaxClockSkew is how far ahead of the server clock a fix may be (device clocks drift).
	MaxClockSkew time.Duration
	// MaxFixAge is how old a fix may be when it arrives; older fixes are STALE.
	MaxFixAge time.Duration
}

// Service implements the courier service's use cases over a Store. It is safe for concurrent use. Call
// Load before serving and Run while serving (see the package documentation for the live state).
type Service struct {
	store  Store
	users  Users
	now    func() time.Time
	logger *slog.Logger
	opts   Options

	live  *live
	watch *broadcaster

	// refreshMu serialises read-after-write refreshes of one courier's live state (striped by id), so that
	// an older read never overwrites a newer one.
	refreshMu [64]sync.Mutex
	seed      maphash.Seed

	pendingMu sync.Mutex
	pending   map[string]LocationFix
	flushNow  chan struct{}
	lastHour  time.Time
}

// NewService returns a Service over store that looks users up in users.
func NewService(store Store, users Users, opts Options) *Service {
	setDefault(&opts.FlushInterval, DefaultFlushInterval)
	setDefault(&opts.FlushBatch, DefaultFlushBatch)
	setDefault(&opts.FixesPerSecond, DefaultFixesPerSecond)
	setDefault(&opts.FixBurst, DefaultFixBurst)
	setDefault(&opts.MaxClockSkew, DefaultMaxClockSkew)
	setDefault(&opts.MaxFixAge, DefaultMaxFixAge)
	s := &Service{
		store:    store,
		users:    users,
		now:      opts.Now,
		logger:   opts.Logger,
		opts:     opts,
		live:     newLive(),
		watch:    newBroadcaster(),
		seed:     maphash.MakeSeed(),
		pending:  make(map[string]LocationFix),
		flushNow: make(chan struct{}, 1),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	return s
}

// storedTime returns t as stores keep it: in UTC, to the microsecond. The domain rounds times before
// storing them, so that what it returns equals what it reads back later.
func storedTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func setDefault[T int | float64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Load warms the live state from the store: every courier with its status and claims, the current hour's
// availability and the latest persisted locations. Call it once before serving.
func (s *Service) Load(ctx context.Context) error {
	now := s.now()
	hour := now.UTC().Truncate(time.Hour)
	after := ""
	for {
		page, err := s.store.ListCouriers(ctx, Filter{}, after, 500)
		if err != nil {
			return fmt.Errorf("load couriers: %w", err)
		}
		if len(page) == 0 {
			break
		}
		ids := make([]string, len(page))
		for i, c := range page {
			ids[i] = c.ID
		}
		avail, err := s.store.AvailableAt(ctx, hour, ids)
		if err != nil {
			return fmt.Errorf("load availability: %w", err)
		}
		for _, c := range page {
			var tasks []string
			if c.ActiveTasks > 0 {
				claims, err := s.store.Claims(ctx, c.ID)
				if err != nil {
					return fmt.Errorf("load claims of %s: %w", c.ID, err)
				}
				tasks = taskIDs(claims)
			}
			s.live.set(c, tasks, avail[c.ID], hour, now)
		}
		after = page[len(page)-1].ID
	}
	fixes, err := s.store.LoadLocations(ctx)
	if err != nil {
		return fmt.Errorf("load locations: %w", err)
	}
	s.live.mu.Lock()
	for _, f := range fixes {
		if e := s.live.byID[f.CourierID]; e != nil {
			e.loc, e.hasLoc = f, true
			s.live.grid.put(e)
		}
	}
	s.live.mu.Unlock()
	s.lastHour = hour
	return nil
}

// Run persists accepted locations every FlushInterval (or sooner when FlushBatch couriers have unsaved
// ones) and refreshes the current hour's availability when the hour turns, until ctx ends. Then it ends
// every WatchCouriers stream (they get Unavailable), persists once more and returns the error of that last
// flush. Fixes ingested after Run returns are persisted only by a later Flush: call Flush once the server
// has stopped.
func (s *Service) Run(ctx context.Context) error {
	ticker := time.NewTicker(s.opts.FlushInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			s.watch.close()
			flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			return s.Flush(flushCtx)
		case <-ticker.C:
			s.rollHour(ctx)
		case <-s.flushNow:
		}
		if err := s.Flush(ctx); err != nil && ctx.Err() == nil {
			s.logger.Warn("persist courier locations; retrying at the next flush", "error", err.Error())
		}
	}
}

// Flush persists the locations accepted since the last flush. On failure they stay pending (unless a
// newer fix of the same courier arrived meanwhile) for the next flush.
func (s *Service) Flush(ctx context.Context) error {
	s.pendingMu.Lock()
	if len(s.pending) == 0 {
		s.pendingMu.Unlock()
		return nil
	}
	batch := make([]LocationFix, 0, len(s.pending))
	for _, f := range s.pending {
		batch = append(batch, f)
	}
	clear(s.pending)
	s.pendingMu.Unlock()

	if err := s.store.SaveLocations(ctx, batch); err != nil {
		s.pendingMu.Lock()
		for _, f := range batch {
			if _, newer := s.pending[f.CourierID]; !newer {
				s.pending[f.CourierID] = f
			}
		}
		s.pendingMu.Unlock()
		return fmt.Errorf("save %d courier locations: %w", len(batch), err)
	}
	return nil
}

// rollHour refreshes every courier's availability for the current hour when the hour has turned, and
// tells watchers about couriers whose availability changed.
func (s *Service) rollHour(ctx context.Context) {
	hour := s.now().UTC().Truncate(time.Hour)
	if !hour.After(s.lastHour) {
		return
	}
	ids := s.live.ids()
	var events []Event
	for len(ids) > 0 {
		n := min(len(ids), 500)
		avail, err := s.store.AvailableAt(ctx, hour, ids[:n])
		if err != nil {
			s.logger.Warn("refresh courier availability; retrying at the next tick", "error", err.Error())
			return
		}
		events = append(events, s.live.setAvailableNow(ids[:n], avail, hour, s.now())...)
		ids = ids[n:]
	}
	s.lastHour = hour
	s.watch.publish(events)
}

// Authorization.
//
// Role-level rules (who may call an RPC at all) are the transport's policy. The domain adds object-level
// rules: dispatchers, admins and services act on any courier; a user with the courier role acts only on
// the courier linked to their user id; nobody else acts on any. A courier caller's own courier is found
// from their user id and compared with the target id, without looking the target up, so a refusal says
// nothing about whether the target exists: reads answer NotFound (as if it did not exist, so ids cannot be
// probed) and changes answer PermissionDenied (as the contract promises).

// privileged reports whether p may act on every courier.
func privileged(p auth.Principal) bool {
	return p.Kind == auth.Service || p.HasRole(auth.RoleDispatcher) || p.HasRole(auth.RoleAdmin)
}

var (
	errNotFound = apperr.Errorf(apperr.NotFound, "courier not found")
	errDenied   = apperr.Errorf(apperr.PermissionDenied, "permission denied")
)

// authorizeRead returns nil when the caller may read courier id, NotFound otherwise.
func (s *Service) authorizeRead(ctx context.Context, id string) error {
	ok, err := s.mayActOn(ctx, id)
	if err != nil {
		return err
	}
	if !ok {
		return errNotFound
	}
	return nil
}

// authorizeWrite returns nil when the caller may change courier id, PermissionDenied otherwise.
func (s *Service) authorizeWrite(ctx context.Context, id string) error {
	ok, err := s.mayActOn(ctx, id)
	if err != nil {
		return err
	}
	if !ok {
		return errDenied
	}
	return nil
}

func (s *Service) mayActOn(ctx context.Context, id string) (bool, error) {
	p := auth.FromContext(ctx)
	if privileged(p) {
		return true, nil
	}
	if !p.HasRole(auth.RoleCourier) {
		return false, nil
	}
	own, err := s.ownCourierID(ctx, p.Subject)
	if err != nil {
		return false, err
	}
	return own != "" && own == id, nil
}

// ownCourierID returns the id of the courier linked to userID, "" when there is none.
func (s *Service) ownCourierID(ctx context.Context, userID string) (string, error) {
	if id := s.live.courierOfUser(userID); id != "" {
		return id, nil
	}
	uid, ok := normalizeID(userID)
	if !ok {
		return "", nil
	}
	c, err := s.store.GetCourierByUser(ctx, uid)
	if apperr.CodeOf(err) == apperr.NotFound {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("find courier of user %s: %w", uid, err)
	}
	return c.ID, nil
}

// requirePrivileged returns PermissionDenied unless the caller is a dispatcher, an admin or a service.
func requirePrivileged(ctx context.Context) error {
	if !privileged(auth.FromContext(ctx)) {
		return errDenied
	}
	return nil
}

// requireService returns PermissionDenied unless the caller is a service.
func requireService(ctx context.Context) error {
	if auth.FromContext(ctx).Kind != auth.Service {
		return errDenied
	}
	return nil
}

// Profiles.

// RegisterRequest creates a courier profile.
type RegisterRequest struct {
	UserID string
	// DisplayName defaults to the user's display name.
	DisplayName string
	Mode        Mode
	Capacity    int
}

// RegisterCourier creates the profile of an existing active user whose role is courier. The courier
// starts offline with no availability hours. Dispatchers, admins and services only.
//
// Errors: Invalid for a bad field (or no display name given while the user has none); PermissionDenied
// for other callers; NotFound when the user does not exist; FailedPrecondition when the user is not a
// courier or not active; Conflict when the user already has a courier profile; Unavailable when identity
// cannot be reached.
func (s *Service) RegisterCourier(ctx context.Context, req RegisterRequest) (Courier, error) {
	if err := requirePrivileged(ctx); err != nil {
		return Courier{}, err
	}
	var v violations
	uid := v.id("user_id", req.UserID)
	if req.DisplayName != "" {
		v.displayName("display_name", req.DisplayName)
	}
	v.mode("transport_mode", req.Mode)
	v.capacity("capacity", req.Capacity)
	if err := v.err(); err != nil {
		return Courier{}, err
	}
	u, err := s.users.GetUser(ctx, uid)
	if err != nil {
		if apperr.CodeOf(err) == apperr.NotFound {
			return Courier{}, apperr.Wrap(apperr.NotFound, err, "user not found")
		}
		return Courier{}, fmt.Errorf("look up user %s: %w", uid, err)
	}
	if u.Role != auth.RoleCourier {
		return Courier{}, apperr.Errorf(apperr.FailedPrecondition, "user's role is not courier")
	}
	if u.Status != UserActive {
		return Courier{}, apperr.Errorf(apperr.FailedPrecondition, "user is not active")
	}
	name := req.DisplayName
	if name == "" {
		name = u.DisplayName
		if displayNameProblem(name) != "" {
			return Courier{}, apperr.InvalidFields("invalid request", apperr.FieldViolation{
				Field: "display_name", Description: "is required: the user has no usable display name"})
		}
	}
	now := storedTime(s.now())
	c := Courier{
		ID:          newID(now),
		UserID:      uid,
		DisplayName: name,
		Mode:        req.Mode,
		Capacity:    req.Capacity,
		Status:      StatusOffline,
		CreatedAt:   now,
		UpdatedAt:   now,
		Version:     1,
	}
	if err := s.store.CreateCourier(ctx, c); err != nil {
		if apperr.CodeOf(err) == apperr.Conflict {
			return Courier{}, apperr.Wrap(apperr.Conflict, err, "user already has a courier profile")
		}
		return Courier{}, fmt.Errorf("create courier for user %s: %w", uid, err)
	}
	s.publishRefreshed(ctx, c.ID, ChangeProfile)
	return c, nil
}

// Lookup selects one courier by exactly one of its id or its user's id.
type Lookup struct {
	ID     string
	UserID string
}

// GetCourier returns the courier that l selects.
//
// Errors: Invalid when neither or both keys, or a malformed one, are given; NotFound when no courier
// matches or the caller may not see it.
func (s *Service) GetCourier(ctx context.Context, l Lookup) (Courier, error) {
	var v violations
	switch {
	case (l.ID == "") == (l.UserID == ""):
		v.add("id", "exactly one of id and user_id is required")
	case l.ID != "":
		l.ID = v.id("id", l.ID)
	default:
		l.UserID = v.id("user_id", l.UserID)
	}
	if err := v.err(); err != nil {
		return Courier{}, err
	}
	if l.UserID != "" {
		p := auth.FromContext(ctx)
		if !privileged(p) && !(p.HasRole(auth.RoleCourier) && strings.EqualFold(p.Subject, l.UserID)) {
			return Courier{}, errNotFound
		}
		c, err := s.store.GetCourierByUser(ctx, l.UserID)
		if err != nil {
			return Courier{}, notFoundOr(err, "get courier of user "+l.UserID)
		}
		return c, nil
	}
	if err := s.authorizeRead(ctx, l.ID); err != nil {
		return Courier{}, err
	}
	c, err := s.store.GetCourier(ctx, l.ID)
	if err != nil {
		return Courier{}, notFoundOr(err, "get courier "+l.ID)
	}
	return c, nil
}

// notFoundOr returns the store's NotFound as the domain's, and wraps anything else with context.
func notFoundOr(err error, what string) error {
	if apperr.CodeOf(err) == apperr.NotFound {
		return errNotFound
	}
	return fmt.Errorf("%s: %w", what, err)
}

// ListRequest asks for one page of couriers.
type ListRequest struct {
	// PageSize is 0 (DefaultPageSize) to MaxPageSize.
	PageSize int
	// PageToken is the previous page's NextPageToken, "" for the first page.
	PageToken string
	Filter    Filter
}

// ListPage is one page of couriers.
type ListPage struct {
	Couriers []Courier
	// NextPageToken is "" on the last page.
	NextPageToken string
	// Total counts the couriers matching the filter across all pages.
	Total int
}

// ListCouriers returns one page of couriers ordered by id (registration order). Dispatchers, admins and
// services only.
//
// Errors: Invalid for a page size out of range, an undefined filter value, or a malformed page token or
// one issued for other filters; PermissionDenied for other callers.
func (s *Service) ListCouriers(ctx context.Context, req ListRequest) (ListPage, error) {
	if err := requirePrivileged(ctx); err != nil {
		return ListPage{}, err
	}
	var v violations
	if req.PageSize < 0 || req.PageSize > MaxPageSize {
		v.add("page_size", fmt.Sprintf("must be between 0 and %d", MaxPageSize))
	}
	if req.Filter.Status != "" && !req.Filter.Status.Valid() {
		v.add("status", "is not a defined status")
	}
	if req.Filter.Mode != "" && !req.Filter.Mode.Valid() {
		v.add("transport_mode", "is not a defined transport mode")
	}
	after, ok := decodePageToken(req.PageToken, req.Filter)
	if !ok {
		v.add("page_token", "is malformed or was issued for other filters")
	}
	if err := v.err(); err != nil {
		return ListPage{}, err
	}
	size := req.PageSize
	if size == 0 {
		size = DefaultPageSize
	}
	cs, err := s.store.ListCouriers(ctx, req.Filter, after, size+1)
	if err != nil {
		return ListPage{}, fmt.Errorf("list couriers: %w", err)
	}
	total, err := s.store.CountCouriers(ctx, req.Filter)
	if err != nil {
		return ListPage{}, fmt.Errorf("count couriers: %w", err)
	}
	page := ListPage{Couriers: cs, Total: total}
	if len(cs) > size {
		page.Couriers = cs[:size]
		page.NextPageToken = encodePageToken(cs[size-1].ID, req.Filter)
	}
	return page, nil
}

// A page token is "v1|status|mode|after id", base64url-encoded: opaque to callers, bound to the filters.
func encodePageToken(after string, f Filter) string {
	return base64.RawURLEncoding.EncodeToString([]byte("v1|" + string(f.Status) + "|" + string(f.Mode) + "|" + after))
}

func decodePageToken(tok string, f Filter) (after string, ok bool) {
	if tok == "" {
		return "", true
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return "", false
	}
	parts := strings.Split(string(b), "|")
	if len(parts) != 4 || parts[0] != "v1" || parts[1] != string(f.Status) || parts[2] != string(f.Mode) {
		return "", false
	}
	return normalizeID(parts[3])
}

// Field names an updatable profile field.
type Field string

// The updatable fields.
const (
	FieldDisplayName Field = "display_name"
	FieldMode        Field = "transport_mode"
	FieldCapacity    Field = "capacity"
)

// UpdateRequest changes the named fields of a courier's profile.
type UpdateRequest struct {
	ID string
	// Fields lists what to change; the values are taken from the fields below.
	Fields      []Field
	DisplayName string
	Mode        Mode
	Capacity    int
	// Etag, when not empty, must equal the stored version's etag (see Courier.Etag).
	Etag string
}

// Etag returns the opaque version string of the profile.
func (c Courier) Etag() string { return strconv.FormatInt(c.Version, 10) }

// UpdateCourier changes the profile fields named in req. Dispatchers, admins and services may change
// every field. A courier may change their own display name and transport mode (how they travel today)
// but not their capacity, which decides how much work dispatch gives them: naming capacity with a value
// other than the current one is PermissionDenied, so that a client may send back what it read.
//
// Errors: Invalid for a malformed id, an unknown field, a bad value or a malformed etag; PermissionDenied
// when the caller may not change the courier or the field; NotFound when the courier does not exist;
// Aborted when the etag no longer matches (or concurrent updates kept winning); FailedPrecondition when
// the capacity would drop below the claimed tasks.
func (s *Service) UpdateCourier(ctx context.Context, req UpdateRequest) (Courier, error) {
	var v violations
	id := v.id("id", req.ID)
	var want int64
	if req.Etag != "" {
		n, err := strconv.ParseInt(req.Etag, 10, 64)
		if err != nil || n < 1 {
			v.add("etag", "is malformed")
		}
		want = n
	}
	set := map[Field]bool{}
	for _, f := range req.Fields {
		switch f {
		case FieldDisplayName:
			v.displayName("display_name", req.DisplayName)
		case FieldMode:
			v.mode("transport_mode", req.Mode)
		case FieldCapacity:
			v.capacity("capacity", req.Capacity)
		default:
			v.add("update_mask", fmt.Sprintf("%q is not an updatable field", f))
		}
		set[f] = true
	}
	if err := v.err(); err != nil {
		return Courier{}, err
	}
	if err := s.authorizeWrite(ctx, id); err != nil {
		return Courier{}, err
	}
	self := !privileged(auth.FromContext(ctx))

	// Without an etag the update is unconditional: retry a few times when a concurrent update wins.
	for range 3 {
		cur, err := s.store.GetCourier(ctx, id)
		if err != nil {
			return Courier{}, notFoundOr(err, "get courier "+id)
		}
		if want != 0 && cur.Version != want {
			return Courier{}, apperr.Errorf(apperr.Aborted, "courier changed since it was read (etag mismatch)")
		}
		if self && set[FieldCapacity] && req.Capacity != cur.Capacity {
			return Courier{}, apperr.Errorf(apperr.PermissionDenied, "couriers may not change their own capacity")
		}
		next := cur
		if set[FieldDisplayName] {
			next.DisplayName = req.DisplayName
		}
		if set[FieldMode] {
			next.Mode = req.Mode
		}
		if set[FieldCapacity] {
			next.Capacity = req.Capacity
		}
		if next == cur {
			return cur, nil // nothing changes: keep the version, so etags stay valid
		}
		next.Version = cur.Version + 1
		next.UpdatedAt = storedTime(s.now())
		out, err := s.store.UpdateCourier(ctx, next)
		switch apperr.CodeOf(err) {
		case "":
			s.publishRefreshed(ctx, id, ChangeProfile)
			return out, nil
		case apperr.Aborted:
			if want != 0 {
				return Courier{}, apperr.Wrap(apperr.Aborted, err, "courier changed since it was read (etag mismatch)")
			}
			continue
		case apperr.NotFound:
			return Courier{}, errNotFound
		case apperr.FailedPrecondition:
			return Courier{}, apperr.Wrap(apperr.FailedPrecondition, err, "capacity is below the tasks currently claimed")
		default:
			return Courier{}, fmt.Errorf("update courier %s: %w", id, err)
		}
	}
	return Courier{}, apperr.Errorf(apperr.Aborted, "courier is being changed concurrently; retry")
}

// violations collects field violations of a request.
type violations []apperr.FieldViolation

func (v *violations) add(field, desc string) {
	*v = append(*v, apperr.FieldViolation{Field: field, Description: desc})
}

// id returns the normalised id, recording a violation when it is not a UUID.
func (v *violations) id(field, id string) string {
	n, ok := normalizeID(id)
	if !ok {
		v.add(field, "must be a UUID")
	}
	return n
}

func (v *violations) displayName(field, name string) {
	if p := displayNameProblem(name); p != "" {
		v.add(field, p)
	}
}

func displayNameProblem(name string) string {
	switch {
	case name == "":
		return "is required"
	case !utf8.ValidString(name):
		return "must be valid UTF-8"
	case utf8.RuneCountInString(name) > MaxDisplayNameLen:
		return fmt.Sprintf("must be at most %d characters", MaxDisplayNameLen)
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return "must not contain control characters"
	}
	return ""
}

func (v *violations) mode(field string, m Mode) {
	if !m.Valid() {
		v.add(field, "must be a defined transport mode")
	}
}

func (v *violations) capacity(field string, c int) {
	if c < 1 || c > MaxCapacity {
		v.add(field, fmt.Sprintf("must be between 1 and %d", MaxCapacity))
	}
}

func (v violations) err() error {
	if len(v) == 0 {
		return nil
	}
	return apperr.InvalidFields("invalid request", v...)
}

// errClosed ends watches and rejects new ones once the service shuts down.
var errClosed = apperr.Errorf(apperr.Unavailable, "courier service is shutting down; reconnect")
