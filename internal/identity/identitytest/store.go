// Package identitytest provides fakes of the identity service's dependencies for other packages' tests:
// an in-memory identity.Store that passes storetest.Run, a cheap PasswordHasher and a TokenIssuer.
package identitytest

import (
	"cmp"
	"context"
	"encoding/hex"
	"slices"
	"strings"
	"sync"
	"time"

	"lastmile/internal/identity"
	"lastmile/internal/platform/apperr"
)

// Store is an in-memory identity.Store, guarded by one mutex. It keeps times at the microsecond, as the
// SQL stores do. The zero value is not usable; call NewStore.
type Store struct {
	mu       sync.Mutex
	users    map[string]identity.User // by id
	tokens   map[string]identity.RefreshToken
	activity []identity.Activity
	seq      int64
	keys     map[string]identity.SigningKey
}

var _ identity.Store = (*Store)(nil)

// NewStore returns an empty Store.
func NewStore() *Store {
	return &Store{
		users:  map[string]identity.User{},
		tokens: map[string]identity.RefreshToken{},
		keys:   map[string]identity.SigningKey{},
	}
}

// CreateUser implements identity.Store.
func (s *Store) CreateUser(ctx context.Context, u identity.User) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkNew(u); err != nil {
		return err
	}
	s.users[u.ID] = cleanUser(u)
	return nil
}

// CreateUsers implements identity.Store.
func (s *Store) CreateUsers(ctx context.Context, users []identity.User) ([]error, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	errs := make([]error, len(users))
	for i, u := range users {
		if errs[i] = s.checkNew(u); errs[i] == nil {
			s.users[u.ID] = cleanUser(u)
		}
	}
	return errs, nil
}

// checkNew returns the error of inserting u. The caller holds s.mu.
func (s *Store) checkNew(u identity.User) error {
	if u.ID == "" || u.Email == "" {
		return apperr.Errorf(apperr.Invalid, "a user needs an id and an email")
	}
	if _, ok := s.users[u.ID]; ok {
		return apperr.Errorf(apperr.Conflict, "user id already exists")
	}
	return s.checkUnique(u)
}

// checkUnique returns Conflict when another user holds u's email or username. The caller holds s.mu.
func (s *Store) checkUnique(u identity.User) error {
	for _, o := range s.users {
		if o.ID == u.ID {
			continue
		}
		if strings.EqualFold(o.Email, u.Email) {
			return apperr.Errorf(apperr.Conflict, "email already taken")
		}
		if u.Username != "" && strings.EqualFold(o.Username, u.Username) {
			return apperr.Errorf(apperr.Conflict, "username already taken")
		}
	}
	return nil
}

// GetUser implements identity.Store.
func (s *Store) GetUser(ctx context.Context, l identity.Lookup) (identity.User, error) {
	if err := ctx.Err(); err != nil {
		return identity.User{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	match := func(u identity.User) bool {
		switch {
		case l.ID != "":
			return u.ID == l.ID
		case l.Email != "":
			return strings.EqualFold(u.Email, l.Email)
		default:
			return u.Username != "" && strings.EqualFold(u.Username, l.Username)
		}
	}
	if l == (identity.Lookup{}) {
		return identity.User{}, apperr.Errorf(apperr.Invalid, "empty lookup")
	}
	for _, u := range s.users {
		if match(u) {
			return u, nil
		}
	}
	return identity.User{}, apperr.Errorf(apperr.NotFound, "user not found")
}

// UpdateUser implements identity.Store.
func (s *Store) UpdateUser(ctx context.Context, u identity.User, activity []identity.Activity) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.users[u.ID]
	if !ok {
		return apperr.Errorf(apperr.NotFound, "user not found")
	}
	if cur.Version != u.Version-1 {
		return apperr.Errorf(apperr.Aborted, "user version %d is not the successor of %d", u.Version, cur.Version)
	}
	if err := s.checkUnique(u); err != nil {
		return err
	}
	s.users[u.ID] = cleanUser(u)
	s.append(activity)
	return nil
}

// ListUsers implements identity.Store.
func (s *Store) ListUsers(ctx context.Context, f identity.Filter, after string, limit int) ([]identity.User, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	limit, err := identity.StoreLimit(limit)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.matching(f)
	out = slices.DeleteFunc(out, func(u identity.User) bool { return u.ID <= after })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// CountUsers implements identity.Store.
func (s *Store) CountUsers(ctx context.Context, f identity.Filter) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.matching(f)), nil
}

// matching returns the users matching f, ordered by id. The caller holds s.mu.
func (s *Store) matching(f identity.Filter) []identity.User {
	search := strings.ToLower(f.Search)
	var out []identity.User
	for _, u := range s.users {
		switch {
		case f.Status == "" && u.Status == identity.StatusDeleted,
			f.Status != "" && u.Status != f.Status,
			f.Role != "" && u.Role != f.Role:
			continue
		}
		if search != "" && !strings.Contains(strings.ToLower(u.Email), search) &&
			!strings.Contains(strings.ToLower(u.Username), search) &&
			!strings.Contains(strings.ToLower(u.DisplayName), search) {
			continue
		}
		out = append(out, u)
	}
	slices.SortFunc(out, func(a, b identity.User) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// CreateRefreshToken implements identity.Store.
func (s *Store) CreateRefreshToken(ctx context.Context, t identity.RefreshToken) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := hex.EncodeToString(t.Hash)
	if _, ok := s.tokens[key]; ok {
		return apperr.Errorf(apperr.Conflict, "refresh token already exists")
	}
	s.tokens[key] = cleanToken(t)
	return nil
}

// RotateRefreshToken implements identity.Store.
func (s *Store) RotateRefreshToken(ctx context.Context, oldHash []byte, next identity.RefreshToken, at time.Time) (identity.RefreshToken, error) {
	if err := ctx.Err(); err != nil {
		return identity.RefreshToken{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := hex.EncodeToString(oldHash)
	old, ok := s.tokens[key]
	if !ok {
		return identity.RefreshToken{}, apperr.Errorf(apperr.NotFound, "refresh token not found")
	}
	at = micro(at)
	if !old.UsedAt.IsZero() || !old.RevokedAt.IsZero() || !at.Before(old.ExpiresAt) {
		return cleanToken(old), apperr.Errorf(apperr.FailedPrecondition, "refresh token already used, revoked or expired")
	}
	nextKey := hex.EncodeToString(next.Hash)
	if _, ok := s.tokens[nextKey]; ok {
		return identity.RefreshToken{}, apperr.Errorf(apperr.Conflict, "refresh token already exists")
	}
	old.UsedAt = at
	s.tokens[key] = old
	s.tokens[nextKey] = cleanToken(next)
	return cleanToken(old), nil
}

// GetRefreshToken implements identity.Store.
func (s *Store) GetRefreshToken(ctx context.Context, hash []byte) (identity.RefreshToken, error) {
	if err := ctx.Err(); err != nil {
		return identity.RefreshToken{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[hex.EncodeToString(hash)]
	if !ok {
		return identity.RefreshToken{}, apperr.Errorf(apperr.NotFound, "refresh token not found")
	}
	return cleanToken(t), nil
}

// RevokeFamily implements identity.Store.
func (s *Store) RevokeFamily(ctx context.Context, familyID string, at time.Time) error {
	return s.revoke(ctx, at, func(t identity.RefreshToken) bool { return t.FamilyID == familyID })
}

// RevokeUserTokens implements identity.Store.
func (s *Store) RevokeUserTokens(ctx context.Context, userID string, at time.Time) error {
	return s.revoke(ctx, at, func(t identity.RefreshToken) bool { return t.UserID == userID })
}

func (s *Store) revoke(ctx context.Context, at time.Time, match func(identity.RefreshToken) bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, t := range s.tokens {
		if match(t) && t.RevokedAt.IsZero() {
			t.RevokedAt = micro(at)
			s.tokens[k] = t
		}
	}
	return nil
}

// AppendActivity implements identity.Store.
func (s *Store) AppendActivity(ctx context.Context, activity []identity.Activity) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.append(activity)
	return nil
}

// append assigns sequence numbers to activity and stores it. The caller holds s.mu.
func (s *Store) append(activity []identity.Activity) {
	for _, a := range activity {
		s.seq++
		a.Seq = s.seq
		a.At = micro(a.At)
		a.ChangedFields = slices.Clone(a.ChangedFields)
		s.activity = append(s.activity, a)
	}
}

// ActivitySince implements identity.Store.
func (s *Store) ActivitySince(ctx context.Context, after int64, limit int) ([]identity.Activity, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []identity.Activity
	for _, a := range s.activity {
		if a.Seq <= after {
			continue
		}
		if len(out) == limit {
			break
		}
		a.ChangedFields = slices.Clone(a.ChangedFields)
		out = append(out, a)
	}
	return out, nil
}

// SaveSigningKey implements identity.Store.
func (s *Store) SaveSigningKey(ctx context.Context, k identity.SigningKey) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.keys[k.KID]; ok {
		cur.RetireAt = micro(k.RetireAt)
		s.keys[k.KID] = cur
		return nil
	}
	k.PrivateKey = slices.Clone(k.PrivateKey)
	k.PublicKey = slices.Clone(k.PublicKey)
	k.CreatedAt, k.RetireAt = micro(k.CreatedAt), micro(k.RetireAt)
	s.keys[k.KID] = k
	return nil
}

// SigningKeys implements identity.Store.
func (s *Store) SigningKeys(ctx context.Context, at time.Time) ([]identity.SigningKey, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []identity.SigningKey
	for _, k := range s.keys {
		if k.RetireAt.IsZero() || !k.RetireAt.Before(at) {
			k.PrivateKey = slices.Clone(k.PrivateKey)
			k.PublicKey = slices.Clone(k.PublicKey)
			out = append(out, k)
		}
	}
	slices.SortFunc(out, func(a, b identity.SigningKey) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return cmp.Compare(b.KID, a.KID)
	})
	return out, nil
}

// cleanUser truncates u's times to the microsecond.
func cleanUser(u identity.User) identity.User {
	u.CreatedAt, u.UpdatedAt = micro(u.CreatedAt), micro(u.UpdatedAt)
	u.DeletedAt, u.LastLoginAt = micro(u.DeletedAt), micro(u.LastLoginAt)
	return u
}

// cleanToken copies t's hash and truncates its times to the microsecond.
func cleanToken(t identity.RefreshToken) identity.RefreshToken {
	t.Hash = slices.Clone(t.Hash)
	t.IssuedAt, t.ExpiresAt = micro(t.IssuedAt), micro(t.ExpiresAt)
	t.UsedAt, t.RevokedAt = micro(t.UsedAt), micro(t.RevokedAt)
	return t
}

// micro truncates t to the microsecond in UTC; the zero time stays zero.
func micro(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC().Truncate(time.Microsecond)
}
