package identity

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
)

// NewUser is what CreateUser needs to create a user.
type NewUser struct {
	Email       string
	Password    string
	DisplayName string
	// Username is optional.
	Username string
	// Role is the new user's role; empty means RoleCustomer. Only admins may set it.
	Role Role
}

// UserUpdate names the fields of a user to change and their new values.
type UserUpdate struct {
	// ID is the user to change.
	ID string
	// Paths names the fields to change, as in the contract's update_mask: display_name, username, email,
	// role and status. etag may be named too and changes nothing (it is the precondition, see Version), so
	// that a client may send the etag it read along with its changes. Any other path is Invalid: a path
	// the server owns (OutputOnlyPaths) as well as an unknown one, since a mask naming them would succeed
	// while changing nothing the caller asked for.
	Paths       []string
	DisplayName string
	// Username may be set to "" to remove the username.
	Username string
	Email    string
	Role     Role
	// Status may be StatusActive or StatusSuspended; deletion is DeleteUser's job.
	Status Status
	// Version, when not zero, must equal the stored version (the etag the client read), or the update is
	// Aborted.
	Version int64
}

// Mutable paths of UserUpdate.Paths.
const (
	PathDisplayName = "display_name"
	PathUsername    = "username"
	PathEmail       = "email"
	PathRole        = "role"
	PathStatus      = "status"
)

// MutablePaths are the paths an update may change, in the contract's order.
var MutablePaths = []string{PathDisplayName, PathUsername, PathEmail, PathRole, PathStatus}

// PathEtag names the user's etag in an update mask: a precondition, not a change.
const PathEtag = "etag"

// OutputOnlyPaths are the update-mask paths of fields the server owns. UpdateUser refuses them.
var OutputOnlyPaths = []string{"id", "create_time", "update_time", "delete_time", "last_login_time"}

// CreateUser creates a user: a public sign-up, or an admin creating any kind of user.
//
// Anyone but an admin must leave Role empty and gets a customer; a role set by a non-admin is refused
// rather than silently replaced, so that a client bug or a probe is visible. The email is normalised
// (NormalizeEmail) and the display name trimmed.
//
// A sign-up (an anonymous caller) counts against its client's sign-up limit (Options.SignUpLimit)
// whatever the answer. A taken email is answered with Conflict "email already registered" before any
// password is hashed, and deleted accounts keep their email: the answer tells that the email is
// registered, the price of a contract where the email is the login name. The limit is what makes asking
// it as expensive per client as guessing a password at login.
//
// Errors: Invalid with field violations; PermissionDenied when a non-admin sets Role; Conflict when the
// email or the username is taken; ResourceExhausted with RetryAfter when the client's sign-up limit is
// reached or the password hasher is saturated.
func (s *Service) CreateUser(ctx context.Context, in NewUser) (User, error) {
	c := callerOf(ctx)
	if in.Role != "" && !c.isAdmin() {
		return User{}, apperr.Errorf(apperr.PermissionDenied, "only admins may set the role of a new user")
	}
	if c.Kind == auth.Anonymous {
		// Before anything is looked up or hashed, and kept whatever the outcome: a taken email must cost
		// the same budget as a new account, or the limit would not bound probing.
		if _, err := s.signUpLimit.take(s.opts.ClientKey(ctx), s.now()); err != nil {
			return User{}, err
		}
	}
	u, err := s.newUser(ctx, in, s.checkFree)
	if err != nil {
		return User{}, err
	}
	if err := s.store.CreateUser(ctx, u); err != nil {
		return User{}, fmt.Errorf("create user: %w", err)
	}
	return u, nil
}

// newUser validates in and returns the user to store, with its password hashed. checkFree, when not nil,
// runs between validation and hashing: CreateUser's check that the names are free. The store's uniqueness
// constraints stay the arbiter (two sign-ups may race past the check); it only spares the hasher the work
// for names that are plainly taken. BulkCreateUsers leaves it nil: its store batch finds duplicates in
// one round trip.
func (s *Service) newUser(ctx context.Context, in NewUser, checkFree func(ctx context.Context, email, username string) error) (User, error) {
	in.Email = NormalizeEmail(in.Email)
	in.DisplayName = strings.TrimSpace(in.DisplayName)
	var v violations
	v.email("email", in.Email)
	v.password("password", in.Password, in.Email, in.Username, in.DisplayName)
	v.displayName("display_name", in.DisplayName)
	v.username("username", in.Username)
	v.role("role", in.Role)
	if err := v.err(); err != nil {
		return User{}, err
	}
	role := in.Role
	if role == "" {
		role = RoleCustomer
	}
	if checkFree != nil {
		if err := checkFree(ctx, in.Email, in.Username); err != nil {
			return User{}, err
		}
	}
	hash, err := s.hasher.Hash(ctx, in.Password)
	if err != nil {
		return User{}, fmt.Errorf("hash password: %w", err)
	}
	now := s.clock()
	return User{
		ID:           newID(),
		Email:        in.Email,
		Username:     in.Username,
		DisplayName:  in.DisplayName,
		Role:         role,
		Status:       StatusActive,
		PasswordHash: hash,
		CreatedAt:    now,
		UpdatedAt:    now,
		Version:      1,
	}, nil
}

// checkFree returns Conflict when email or username (if any) names a stored user, deleted ones included,
// with the messages of the stores' uniqueness violations.
func (s *Service) checkFree(ctx context.Context, email, username string) error {
	for _, k := range []struct {
		what string
		l    Lookup
		msg  string
	}{
		{"email", Lookup{Email: email}, "email already registered"},
		{"username", Lookup{Username: username}, "username already taken"},
	} {
		if k.l == (Lookup{}) {
			continue
		}
		_, err := s.store.GetUser(ctx, k.l)
		switch apperr.CodeOf(err) {
		case "":
			return apperr.Errorf(apperr.Conflict, "%s", k.msg)
		case apperr.NotFound:
		default:
			return fmt.Errorf("look up the %s of a new user: %w", k.what, err)
		}
	}
	return nil
}

// GetUser returns the user that l selects, by exactly one of its keys.
//
// Users may read themselves; dispatchers and admitted services any user that is not deleted; admins
// anyone. A user the caller may not see is NotFound, exactly like a user that does not exist, so that
// accounts cannot be probed.
//
// Errors: Invalid for no key, several keys or a malformed one; NotFound.
func (s *Service) GetUser(ctx context.Context, l Lookup) (User, error) {
	l, err := normalizeLookup(l)
	if err != nil {
		return User{}, err
	}
	u, err := s.store.GetUser(ctx, l)
	if apperr.CodeOf(err) == apperr.NotFound {
		return User{}, errUserNotFound()
	}
	if err != nil {
		return User{}, fmt.Errorf("get user: %w", err)
	}
	if !callerOf(ctx).canSee(u) {
		return User{}, errUserNotFound()
	}
	return u, nil
}

func normalizeLookup(l Lookup) (Lookup, error) {
	var v violations
	var n int
	if l.ID != "" {
		n++
		v.id("id", l.ID)
		l.ID = normalizeID(l.ID)
	}
	if l.Email != "" {
		n++
		l.Email = NormalizeEmail(l.Email)
		v.email("email", l.Email)
	}
	if l.Username != "" {
		n++
		v.username("username", l.Username)
	}
	if n != 1 {
		return Lookup{}, apperr.Errorf(apperr.Invalid, "exactly one of id, email or username is required")
	}
	return l, v.err()
}

// UpdateUser changes the fields of a user named in in.Paths.
//
// Users may change their own display name, username and email. Only admins change role and status, and
// nobody, admins included, changes their own role or status: naming role or status with a value other
// than the current one is then refused (the current value is accepted as a no-op, so a client may send
// back what it read). The last active admin cannot be demoted or suspended. Passwords change through
// ChangePassword. A change of role or status revokes the user's access tokens (User.RevokedBefore), and
// a suspension also their sessions (refresh tokens).
// An update that changes nothing returns the user unchanged, with the same version.
//
// Errors: Invalid for an empty or unknown path or a bad value; NotFound when the user does not exist
// or the caller may not see it; PermissionDenied when the caller may see the user but not change it,
// or not change a named field; FailedPrecondition for a deleted user or the last active admin; Aborted
// when in.Version is set and no longer matches; Conflict when the new email or username is taken.
func (s *Service) UpdateUser(ctx context.Context, in UserUpdate) (User, error) {
	fields, err := in.normalize()
	if err != nil {
		return User{}, err
	}
	c := callerOf(ctx)
	suspended := false
	u, err := s.update(ctx, in.ID, func(tx UserTx, cur User) (User, []Activity, error) {
		suspended = false
		if !c.canSee(cur) {
			return User{}, nil, errUserNotFound()
		}
		if !c.isAdmin() && !c.is(cur.ID) {
			return User{}, nil, apperr.Errorf(apperr.PermissionDenied, "only the user or an admin may change a user")
		}
		if cur.Status == StatusDeleted {
			return User{}, nil, apperr.Errorf(apperr.FailedPrecondition, "the user is deleted")
		}
		if in.Version != 0 && in.Version != cur.Version {
			return User{}, nil, apperr.Errorf(apperr.Aborted, "the user changed since it was read (etag mismatch); read it again")
		}
		next := in.apply(cur, fields)
		if err := checkChange(ctx, tx, c, cur, next); err != nil {
			return User{}, nil, err
		}
		acts := s.changeActivities(c, cur, next)
		if len(acts) == 0 {
			return cur, nil, nil
		}
		next.Version = cur.Version + 1
		next.UpdatedAt = s.clock()
		if next.Role != cur.Role || next.Status != cur.Status {
			next.RevokedBefore = next.UpdatedAt
		}
		suspended = cur.Status != StatusSuspended && next.Status == StatusSuspended
		return next, acts, nil
	})
	if err != nil {
		return User{}, err
	}
	if suspended {
		// After the commit, as DeleteUser does; the status and RevokedBefore already refuse the sessions'
		// refreshes and access tokens should this step fail.
		if err := s.store.RevokeUserTokens(ctx, u.ID, s.clock()); err != nil {
			return User{}, fmt.Errorf("revoke sessions of user %s: %w", u.ID, err)
		}
	}
	return u, nil
}

// normalize validates the paths and the values they name, and returns the mutable paths.
func (in *UserUpdate) normalize() ([]string, error) {
	var v violations
	v.id("user.id", in.ID)
	in.ID = normalizeID(in.ID)
	if !slices.ContainsFunc(in.Paths, func(p string) bool { return p != PathEtag }) {
		// The contract's own rule (update_user.mask_not_empty) says the same.
		v.add("update_mask", "update_mask names no field to change: name at least one of "+strings.Join(MutablePaths, ", "))
	}
	var fields []string
	for _, p := range in.Paths {
		switch {
		case p == PathEtag:
			continue
		case slices.Contains(OutputOnlyPaths, p):
			v.add("update_mask", fmt.Sprintf("update_mask may not name %s: the server sets it", p))
			continue
		case p == PathDisplayName:
			in.DisplayName = strings.TrimSpace(in.DisplayName)
			v.displayName("user.display_name", in.DisplayName)
		case p == PathUsername:
			v.username("user.username", in.Username)
		case p == PathEmail:
			in.Email = NormalizeEmail(in.Email)
			v.email("user.email", in.Email)
		case p == PathRole:
			if !in.Role.Valid() {
				v.add("user.role", "must be a defined role")
			}
		case p == PathStatus:
			if in.Status != StatusActive && in.Status != StatusSuspended {
				v.add("user.status", "must be active or suspended")
			}
		default:
			v.add("update_mask", fmt.Sprintf("update_mask may not name %q: a user has no such field to change", p))
			continue
		}
		if !slices.Contains(fields, p) {
			fields = append(fields, p)
		}
	}
	return fields, v.err()
}

// apply returns cur with the fields of in named in fields.
func (in UserUpdate) apply(cur User, fields []string) User {
	next := cur
	for _, f := range fields {
		switch f {
		case PathDisplayName:
			next.DisplayName = in.DisplayName
		case PathUsername:
			next.Username = in.Username
		case PathEmail:
			next.Email = in.Email
		case PathRole:
			next.Role = in.Role
		case PathStatus:
			next.Status = in.Status
		}
	}
	return next
}

// checkChange enforces who may change role and status.
func checkChange(ctx context.Context, tx UserTx, c caller, cur, next User) error {
	if next.Role != cur.Role {
		if !c.isAdmin() {
			return apperr.Errorf(apperr.PermissionDenied, "only admins may change a role")
		}
		if c.is(cur.ID) {
			return apperr.Errorf(apperr.PermissionDenied, "nobody may change their own role")
		}
	}
	if next.Status != cur.Status {
		if !c.isAdmin() {
			return apperr.Errorf(apperr.PermissionDenied, "only admins may change a status")
		}
		if c.is(cur.ID) {
			return apperr.Errorf(apperr.PermissionDenied, "nobody may change their own status")
		}
	}
	if activeAdmin(cur) && !activeAdmin(next) {
		return ensureAnotherAdmin(ctx, tx)
	}
	return nil
}

func activeAdmin(u User) bool { return u.Role == RoleAdmin && u.Status == StatusActive }

// ensureAnotherAdmin refuses to take away the last active admin, which would leave nobody able to manage
// users. It counts inside the update's transaction, which locks the admins: two admins demoting each
// other at the same instant run one after the other, and the second is refused.
func ensureAnotherAdmin(ctx context.Context, tx UserTx) error {
	n, err := tx.CountActiveAdmins(ctx)
	if err != nil {
		return fmt.Errorf("count active admins: %w", err)
	}
	if n <= 1 {
		return apperr.Errorf(apperr.FailedPrecondition, "the last active admin cannot be demoted, suspended or deleted")
	}
	return nil
}

// changeActivities describes the difference between cur and next as activity entries.
func (s *Service) changeActivities(c caller, cur, next User) []Activity {
	var profile []string
	if next.DisplayName != cur.DisplayName {
		profile = append(profile, PathDisplayName)
	}
	if next.Username != cur.Username {
		profile = append(profile, PathUsername)
	}
	if next.Email != cur.Email {
		profile = append(profile, PathEmail)
	}
	var acts []Activity
	if len(profile) > 0 {
		acts = append(acts, s.activity(cur.ID, ActivityProfileChanged, c.actorID(), profile...))
	}
	if next.Role != cur.Role {
		acts = append(acts, s.activity(cur.ID, ActivityRoleChanged, c.actorID(), PathRole))
	}
	if next.Status != cur.Status {
		acts = append(acts, s.activity(cur.ID, ActivityStatusChanged, c.actorID(), PathStatus))
	}
	return acts
}

// ChangePassword replaces the password of user id and revokes every refresh token of the user, ending
// their sessions.
//
// Users changing their own password must give the current one; failed attempts count against the same
// limit as failed logins. Admins reset another user's password without it.
//
// Errors: Invalid for a malformed id, a new password of the wrong length or equal to current; NotFound
// when the user does not exist or the caller may not see it; PermissionDenied when the caller may see
// the user but not change it, or current is missing or wrong; ResourceExhausted after too many wrong
// current passwords; FailedPrecondition for a deleted user.
func (s *Service) ChangePassword(ctx context.Context, id, current, next string) error {
	var v violations
	v.id("id", id)
	v.password("new_password", next)
	if next == current {
		v.add("new_password", "must differ from current_password")
	}
	if err := v.err(); err != nil {
		return err
	}
	id = normalizeID(id)
	c := callerOf(ctx)
	u, err := s.GetUser(ctx, Lookup{ID: id})
	if err != nil {
		return err
	}
	self := c.is(u.ID)
	switch {
	case !self && !c.isAdmin():
		return apperr.Errorf(apperr.PermissionDenied, "only the user or an admin may change a password")
	case u.Status == StatusDeleted:
		return apperr.Errorf(apperr.FailedPrecondition, "the user is deleted")
	case self:
		if err := s.checkCurrentPassword(ctx, u, current); err != nil {
			return err
		}
	}
	hash, err := s.hasher.Hash(ctx, next)
	if err != nil {
		return fmt.Errorf("hash password: %w", err)
	}
	if _, err := s.update(ctx, id, func(_ UserTx, cur User) (User, []Activity, error) {
		if cur.Status == StatusDeleted {
			return User{}, nil, apperr.Errorf(apperr.FailedPrecondition, "the user is deleted")
		}
		n := cur
		n.PasswordHash = hash
		n.Version = cur.Version + 1
		n.UpdatedAt = s.clock()
		n.RevokedBefore = n.UpdatedAt
		return n, []Activity{s.activity(cur.ID, ActivityPasswordChanged, c.actorID())}, nil
	}); err != nil {
		return err
	}
	if err := s.store.RevokeUserTokens(ctx, id, s.clock()); err != nil {
		return fmt.Errorf("revoke sessions of user %s: %w", id, err)
	}
	return nil
}

// checkCurrentPassword verifies a user's current password, rate limited like logins: a stolen access
// token must not become a password-guessing oracle.
func (s *Service) checkCurrentPassword(ctx context.Context, u User, current string) error {
	if current == "" {
		return apperr.Errorf(apperr.PermissionDenied, "current_password is required to change your own password")
	}
	// Per account alone: the caller holds the user's own token, so there is no stranger to tell apart.
	key := "change-password:" + u.ID
	now := s.now()
	r, err := s.pairLimit.take(key, now)
	if err != nil {
		return err
	}
	ok, _, err := s.hasher.Verify(ctx, current, u.PasswordHash)
	if err != nil {
		r.CancelAt(now)
		return fmt.Errorf("verify current password: %w", err)
	}
	if !ok {
		return apperr.Errorf(apperr.PermissionDenied, "current_password is wrong")
	}
	s.pairLimit.forget(key)
	return nil
}

// DeleteUser soft-deletes user id: its status becomes deleted, every refresh token of the user is revoked
// and login stops working. The email and username stay reserved.
//
// The user themself or an admin. Idempotent: deleting a deleted user returns it unchanged (to its owner as
// well, although GetUser hides deleted users from everyone but admins). The last active admin cannot be
// deleted.
//
// Errors: Invalid for a malformed id; NotFound when the user does not exist or the caller may not see
// it; PermissionDenied when the caller may see the user but not delete it; FailedPrecondition for the last
// active admin.
func (s *Service) DeleteUser(ctx context.Context, id string) (User, error) {
	var v violations
	v.id("id", id)
	if err := v.err(); err != nil {
		return User{}, err
	}
	id = normalizeID(id)
	c := callerOf(ctx)
	u, err := s.update(ctx, id, func(tx UserTx, cur User) (User, []Activity, error) {
		self := c.is(cur.ID)
		if cur.Status == StatusDeleted && (self || c.isAdmin()) {
			return cur, nil, nil
		}
		if !c.canSee(cur) {
			return User{}, nil, errUserNotFound()
		}
		if !self && !c.isAdmin() {
			return User{}, nil, apperr.Errorf(apperr.PermissionDenied, "only the user or an admin may delete a user")
		}
		if activeAdmin(cur) {
			if err := ensureAnotherAdmin(ctx, tx); err != nil {
				return User{}, nil, err
			}
		}
		now := s.clock()
		next := cur
		next.Status = StatusDeleted
		next.DeletedAt = now
		next.UpdatedAt = now
		next.RevokedBefore = now
		next.Version = cur.Version + 1
		return next, []Activity{s.activity(cur.ID, ActivityDeleted, c.actorID())}, nil
	})
	if err != nil {
		return User{}, err
	}
	// Also on a repeated delete: it completes a first delete that stopped before this step.
	if err := s.store.RevokeUserTokens(ctx, id, s.clock()); err != nil {
		return User{}, fmt.Errorf("revoke sessions of user %s: %w", id, err)
	}
	return u, nil
}

// update runs change on user id inside the store's transaction (Store.UpdateUser) and returns the user
// as written. change returns cur itself (same Version) for "nothing to do". change's errors are
// returned as they are.
func (s *Service) update(ctx context.Context, id string, change func(tx UserTx, cur User) (User, []Activity, error)) (User, error) {
	var (
		out     User
		acts    []Activity
		notify  bool
		refused error
	)
	err := s.store.UpdateUser(ctx, id, func(tx UserTx, cur User) (User, []Activity, error) {
		next, a, err := change(tx, cur)
		out, acts, notify, refused = next, a, next.Version != cur.Version && len(a) > 0, err
		return next, a, err
	})
	switch {
	case refused != nil:
		return User{}, refused
	case apperr.CodeOf(err) == apperr.NotFound:
		return User{}, errUserNotFound()
	case err != nil:
		return User{}, fmt.Errorf("update user %s: %w", id, err)
	}
	if notify {
		s.hub.nudge()
		if slices.ContainsFunc(acts, func(a Activity) bool { return revokes(a.Type) }) {
			s.noteSubject(out)
		}
	}
	return out, nil
}

// activity returns a new activity entry about userID.
func (s *Service) activity(userID string, t ActivityType, actor string, fields ...string) Activity {
	return Activity{
		ID:            newID(),
		UserID:        userID,
		Type:          t,
		At:            s.clock(),
		ActorUserID:   actor,
		ChangedFields: fields,
	}
}

// clock returns the current time in UTC at the microsecond precision that the stores keep, so that a
// value returned by a write equals the value read back later.
func (s *Service) clock() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

// newID returns a new UUIDv7: time-ordered, so keyset pagination by id follows creation order.
// uuid.NewV7 fails only when crypto/rand does, which since Go 1.24 crashes the program instead.
func newID() string { return uuid.Must(uuid.NewV7()).String() }
