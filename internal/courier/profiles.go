package courier

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/freetext"
)

// RegisterRequest creates a courier profile.
type RegisterRequest struct {
	UserID string
	// DisplayName defaults to the user's display name. Leading and trailing blanks are dropped.
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
	// Leading and trailing blanks are dropped, as identity does with users' names, so that a name of
	// blanks alone is none (and the user's name is taken) rather than a courier shown nameless.
	req.DisplayName = strings.TrimSpace(req.DisplayName)
	if freetext.Blank(req.DisplayName) {
		req.DisplayName = "" // no name: the user's is taken
	}
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
			return Courier{}, apperr.InvalidRequest(apperr.FieldViolation{
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

// Field names a profile field in an update, as the contract's update_mask paths do.
type Field string

// The updatable fields.
const (
	FieldDisplayName Field = "display_name"
	FieldMode        Field = "transport_mode"
	FieldCapacity    Field = "capacity"
)

// UpdatableFields are the updatable fields, in the contract's order.
var UpdatableFields = []Field{FieldDisplayName, FieldMode, FieldCapacity}

// FieldEtag may be named in an update and changes nothing: the etag is the update's precondition (see
// UpdateRequest.Etag), and a client may send the etag it read along with its changes.
const FieldEtag Field = "etag"

// OutputOnlyFields are the profile fields the server sets. An update naming one is Invalid: it would
// succeed while changing nothing the caller asked for.
var OutputOnlyFields = []Field{"id", "user_id", "status", "create_time", "update_time"}

// UpdateRequest changes the named fields of a courier's profile.
type UpdateRequest struct {
	ID string
	// Fields lists what to change, at least one field; the values are taken from the fields below.
	// FieldEtag is allowed and ignored; an output-only or unknown field is Invalid.
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
// Aborted when the etag no longer matches; FailedPrecondition when the capacity would drop below the
// claimed tasks.
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
	if !slices.ContainsFunc(req.Fields, func(f Field) bool { return f != FieldEtag }) {
		// The contract's own rule (update_courier.mask_not_empty) says the same.
		names := make([]string, len(UpdatableFields))
		for i, f := range UpdatableFields {
			names[i] = string(f)
		}
		v.add("update_mask", "update_mask names no field to change: name at least one of "+strings.Join(names, ", "))
	}
	for _, f := range req.Fields {
		switch {
		case f == FieldEtag:
			continue
		case f == FieldDisplayName:
			// Trimmed as in RegisterCourier: a name of blanks alone is none, so it is refused.
			req.DisplayName = strings.TrimSpace(req.DisplayName)
			v.displayName("display_name", req.DisplayName)
		case f == FieldMode:
			v.mode("transport_mode", req.Mode)
		case f == FieldCapacity:
			v.capacity("capacity", req.Capacity)
		case slices.Contains(OutputOnlyFields, f):
			v.add("update_mask", fmt.Sprintf("update_mask may not name %s: the server sets it", f))
		default:
			v.add("update_mask", fmt.Sprintf("update_mask may not name %q: a courier has no such field to change", f))
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

	// The checks that read the stored courier run inside the store's transaction, under its lock, so no
	// concurrent change slips in between them and the write.
	changed := false
	out, err := s.store.UpdateCourier(ctx, id, func(cur Courier) (Courier, error) {
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
		if err := cur.CheckProfileUpdate(next); err != nil {
			return Courier{}, err
		}
		changed = true
		return next, nil
	})
	switch apperr.CodeOf(err) {
	case "":
		if changed {
			s.publishRefreshed(ctx, id, ChangeProfile)
		}
		return out, nil
	case apperr.Aborted, apperr.PermissionDenied:
		return Courier{}, err
	case apperr.NotFound:
		return Courier{}, errNotFound
	case apperr.FailedPrecondition:
		return Courier{}, apperr.Wrap(apperr.FailedPrecondition, err, "capacity is below the tasks currently claimed")
	default:
		return Courier{}, fmt.Errorf("update courier %s: %w", id, err)
	}
}
