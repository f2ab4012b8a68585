package identity

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"time"
	"unicode/utf8"

	"golang.org/x/time/rate"

	"lastmile/internal/platform/apperr"
)

// Refresh-token limits. Tokens are 32 random bytes, base64url-encoded (43 characters); MaxRefreshTokenLen
// matches the contract and keeps hostile input small.
const (
	refreshTokenBytes  = 32
	MaxRefreshTokenLen = 512
	maxUsernameLogin   = 32
	maxPasswordLogin   = MaxPasswordLen
)

// Credentials identify a user at login: Email or Username, and the password.
type Credentials struct {
	Email    string
	Username string
	Password string
}

// Session is what Login and RefreshToken hand out.
type Session struct {
	// AccessToken is the bearer token for calls, valid until AccessTokenExpiresAt.
	AccessToken          string
	AccessTokenExpiresAt time.Time
	// RefreshToken is opaque and single use; it is valid until RefreshTokenExpiresAt at most, which is the
	// same for every token of a session.
	RefreshToken          string
	RefreshTokenExpiresAt time.Time
	// User is the user the session belongs to.
	User User
}

func errInvalidCredentials() error {
	return apperr.Errorf(apperr.Unauthenticated, "invalid credentials")
}

func errInvalidRefreshToken() error {
	return apperr.Errorf(apperr.Unauthenticated, "invalid refresh token")
}

// Login checks a user's password and starts a session: an access token and the first refresh token of a
// new family.
//
// An unknown user, a wrong password and a suspended or deleted account give the same error, and an
// unknown user costs a DummyVerify, so that neither the answer nor its timing tells whether an account
// exists.
//
// Failed attempts are limited per account and client (Options.LoginFailures) and per client
// (Options.LoginClientFailures), never per account alone: a stranger's failures must not lock the owner
// out. Failures on one account from all clients only slow the next failures' answers
// (Options.LoginAccountSlowdown); a right password from a client that has not used up its own budget is
// answered at once. A successful login clears its client's count on the account. A hash with outdated
// parameters is replaced on success.
//
// Errors: Invalid for missing or oversized fields; Unauthenticated "invalid credentials";
// ResourceExhausted with RetryAfter when a limit is reached.
func (s *Service) Login(ctx context.Context, in Credentials) (Session, error) {
	lookup, account, err := loginLookup(in)
	if err != nil {
		return Session{}, err
	}
	// The limit is per account, however it is named: an existing user's attempts count under its id, so
	// alternating email and username does not double an attacker's guesses. Unknown names count under
	// the name, so that probing them is limited too.
	stored, err := s.store.GetUser(ctx, lookup)
	found := err == nil
	if err != nil && apperr.CodeOf(err) != apperr.NotFound {
		return Session{}, fmt.Errorf("get user for login: %w", err)
	}
	if found {
		account = "user:" + stored.ID
	}
	now := s.now()
	clientKey := s.opts.ClientKey(ctx)
	pairKey := account + " " + clientKey
	pair, err := s.pairLimit.take(pairKey, now)
	if err != nil {
		return Session{}, err
	}
	var client *rate.Reservation
	if clientKey != "" {
		if client, err = s.clientLimit.take(clientKey, now); err != nil {
			pair.CancelAt(now)
			return Session{}, err
		}
	}
	u, rehash, err := s.authenticate(ctx, stored, found, in.Password)
	if err != nil {
		if apperr.CodeOf(err) != apperr.Unauthenticated {
			// Our failure, not the caller's: it must not count against them.
			pair.CancelAt(now)
			if client != nil {
				client.CancelAt(now)
			}
			return Session{}, err
		}
		s.slowDown(ctx, account, now)
		return Session{}, err
	}
	s.pairLimit.forget(pairKey)
	if client != nil {
		client.CancelAt(now)
	}
	return s.startSession(ctx, u, in.Password, rehash)
}

// slowDown counts a failed login on account from any client and, past Options.LoginAccountSlowdown,
// holds the failure's answer for Options.LoginBackoff. Only failures wait: by then the password has been
// checked, so the owner's right password is never delayed, and nobody is refused for it.
func (s *Service) slowDown(ctx context.Context, account string, now time.Time) {
	if _, err := s.accountSlowdown.take(account, now); err != nil {
		s.opts.Sleep(ctx, s.opts.LoginBackoff)
	}
}

// loginLookup validates in and returns the store lookup and the limiter key of the account name.
func loginLookup(in Credentials) (Lookup, string, error) {
	var v violations
	switch n := utf8.RuneCountInString(in.Password); {
	case n == 0:
		v.add("password", "is required")
	case n > maxPasswordLogin:
		v.add("password", "must be at most 128 characters")
	}
	var l Lookup
	var key string
	switch {
	case in.Email != "" && in.Username != "":
		v.add("email", "give either email or username, not both")
	case in.Email != "":
		l.Email = NormalizeEmail(in.Email)
		if len(l.Email) > MaxEmailLen {
			v.add("email", "must be at most 254 characters")
		}
		key = "email:" + l.Email
	case in.Username != "":
		l.Username = in.Username
		if utf8.RuneCountInString(in.Username) > maxUsernameLogin {
			v.add("username", "must be at most 32 characters")
		} else {
			// No account has a name outside the username rule, and the store must not be asked for one:
			// PostgreSQL refuses a NUL in text, which made such a login an Internal error.
			v.username("username", in.Username)
		}
		key = "username:" + FoldKey(in.Username)
	default:
		v.add("email", "email or username is required")
	}
	return l, key, v.err()
}

// authenticate returns u when it was found, is active and password matches, and whether its hash needs
// upgrading. A user that was not found pays a dummy verification, so timing does not tell.
func (s *Service) authenticate(ctx context.Context, u User, found bool, password string) (User, bool, error) {
	if !found {
		if err := s.hasher.DummyVerify(ctx, password); err != nil {
			return User{}, false, fmt.Errorf("verify password: %w", err)
		}
		return User{}, false, errInvalidCredentials()
	}
	// The password is checked for suspended and deleted users too, so that they take as long as others.
	ok, rehash, err := s.hasher.Verify(ctx, password, u.PasswordHash)
	if err != nil {
		// The same text as DummyVerify's failure: the error must not tell whether the user exists.
		return User{}, false, fmt.Errorf("verify password: %w", err)
	}
	if !ok || u.Status != StatusActive {
		return User{}, false, errInvalidCredentials()
	}
	return u, rehash, nil
}

// startSession issues the tokens of a new session for u and records the login.
func (s *Service) startSession(ctx context.Context, u User, password string, rehash bool) (Session, error) {
	if err := s.awaitTokenSecond(ctx, u.RevokedBefore); err != nil {
		return Session{}, err
	}
	now := s.clock()
	access, accessExp, err := s.issuer.Issue(ctx, u.ID, []string{string(u.Role)})
	if err != nil {
		return Session{}, fmt.Errorf("issue access token for user %s: %w", u.ID, err)
	}
	refresh, rt := newRefreshToken(u.ID, newID(), now, now.Add(s.opts.RefreshTokenTTL))
	if err := s.store.CreateRefreshToken(ctx, rt); err != nil {
		return Session{}, fmt.Errorf("store refresh token for user %s: %w", u.ID, err)
	}
	newHash := ""
	if rehash {
		if newHash, err = s.hasher.Hash(ctx, password); err != nil {
			// The old hash still works; upgrading it can wait for the next login.
			s.logger.WarnContext(ctx, "rehash password at login", "user_id", u.ID, "err", err)
			newHash = ""
		}
	}
	verified := u.PasswordHash
	u, err = s.update(ctx, u.ID, func(_ UserTx, cur User) (User, []Activity, error) {
		if cur.Status != StatusActive {
			return User{}, nil, errInvalidCredentials() // suspended or deleted since the password check
		}
		next := cur
		next.LastLoginAt = now
		// Only when nobody changed the password since it was verified.
		if newHash != "" && cur.PasswordHash == verified {
			next.PasswordHash = newHash
		}
		next.Version = cur.Version + 1
		return next, []Activity{s.activity(cur.ID, ActivityLogin, cur.ID)}, nil
	})
	if err != nil {
		// Without the login recorded, the session must not outlive this call.
		if rerr := s.store.RevokeFamily(context.WithoutCancel(ctx), rt.FamilyID, now); rerr != nil {
			s.logger.ErrorContext(ctx, "revoke session after failed login", "user_id", rt.UserID, "err", rerr)
		}
		return Session{}, fmt.Errorf("record login: %w", err)
	}
	return Session{
		AccessToken:           access,
		AccessTokenExpiresAt:  accessExp,
		RefreshToken:          refresh,
		RefreshTokenExpiresAt: rt.ExpiresAt,
		User:                  u,
	}, nil
}

// RefreshToken exchanges a refresh token for new tokens: the old one stops working, the new one belongs
// to the same family and expires when the family does.
//
// Presenting a token that was already used is reuse: either the client or a thief holds a stolen copy,
// so the whole family is revoked and the newest token stops working too. Of two calls racing with one
// token, one wins and the other is reuse.
//
// Errors: Invalid for an empty or oversized token; Unauthenticated "invalid refresh token" when it is
// unknown, expired, revoked or reused, or the user is no longer active.
func (s *Service) RefreshToken(ctx context.Context, token string) (Session, error) {
	if err := checkRefreshToken(token); err != nil {
		return Session{}, err
	}
	hash := hashRefreshToken(token)
	now := s.clock()
	// The access token is issued before the rotation, which cannot call out of its transaction: so the
	// holder is read ahead, and if issuing fails the client keeps a working refresh token.
	presented, err := s.store.GetRefreshToken(ctx, hash)
	if apperr.CodeOf(err) == apperr.NotFound {
		return Session{}, errInvalidRefreshToken()
	}
	if err != nil {
		return Session{}, fmt.Errorf("get refresh token: %w", err)
	}
	holder, err := s.store.GetUser(ctx, Lookup{ID: presented.UserID})
	if apperr.CodeOf(err) == apperr.NotFound {
		return Session{}, errInvalidRefreshToken()
	}
	if err != nil {
		return Session{}, fmt.Errorf("get user %s for refresh: %w", presented.UserID, err)
	}
	var access string
	var accessExp time.Time
	if presented.live(now) && holder.Status == StatusActive {
		if err := s.awaitTokenSecond(ctx, holder.RevokedBefore); err != nil {
			return Session{}, err
		}
		if access, accessExp, err = s.issuer.Issue(ctx, holder.ID, []string{string(holder.Role)}); err != nil {
			return Session{}, fmt.Errorf("issue access token for user %s: %w", holder.ID, err)
		}
	}
	var (
		refresh string
		next    RefreshToken
		owner   User
		refused error
		reused  bool
	)
	err = s.store.UpdateRefreshToken(ctx, hash, func(t RefreshToken, u User) (TokenChange, error) {
		refresh, next = newRefreshToken(t.UserID, t.FamilyID, now, t.ExpiresAt)
		owner = u
		var ch TokenChange
		ch, refused = t.Rotate(next, now)
		reused = !ch.RevokeFamilyAt.IsZero()
		if refused == nil && (u.Status != StatusActive || access == "") {
			// Suspended or deleted, or it changed since the access token was (not) issued.
			return TokenChange{}, errInvalidRefreshToken()
		}
		return ch, nil // a reuse is refused, but its revocation is written
	})
	switch {
	case apperr.CodeOf(err) == apperr.NotFound:
		return Session{}, errInvalidRefreshToken()
	case apperr.CodeOf(err) == apperr.Unauthenticated:
		return Session{}, err
	case err != nil:
		return Session{}, fmt.Errorf("rotate refresh token: %w", err)
	case refused != nil:
		if reused {
			s.logger.WarnContext(ctx, "refresh token reused; revoked its session", "user_id", owner.ID, "family_id", next.FamilyID)
		}
		return Session{}, errInvalidRefreshToken()
	}
	return Session{
		AccessToken:           access,
		AccessTokenExpiresAt:  accessExp,
		RefreshToken:          refresh,
		RefreshTokenExpiresAt: next.ExpiresAt,
		User:                  owner,
	}, nil
}

// live reports whether t may still be rotated at now: not used, revoked or expired.
func (t RefreshToken) live(now time.Time) bool {
	return t.UsedAt.IsZero() && t.RevokedAt.IsZero() && now.Before(t.ExpiresAt)
}

// Rotate decides what presenting t at now does: the change to write and the answer to give.
//
// A live token (not used, revoked or expired) is marked used at now and followed by next, which must be
// a new token of t's family and user (CheckSuccessor). A token used before is reuse: the change revokes
// t's whole family, and the answer is FailedPrecondition "refresh token already used". A revoked or
// expired token changes nothing (FailedPrecondition, UnusableErr).
func (t RefreshToken) Rotate(next RefreshToken, now time.Time) (TokenChange, error) {
	switch {
	case !t.UsedAt.IsZero():
		return TokenChange{RevokeFamilyAt: now}, t.UnusableErr()
	case !t.live(now):
		return TokenChange{}, t.UnusableErr()
	}
	if err := t.CheckSuccessor(next); err != nil {
		return TokenChange{}, err
	}
	return TokenChange{UsedAt: now, Next: next}, nil
}

// CheckSuccessor returns Invalid unless next may follow t in a rotation chain: a token with another hash,
// of t's family and user.
func (t RefreshToken) CheckSuccessor(next RefreshToken) error {
	if next.FamilyID != t.FamilyID || next.UserID != t.UserID || bytes.Equal(next.Hash, t.Hash) {
		return apperr.Errorf(apperr.Invalid, "the next refresh token must be new and belong to the old token's family and user")
	}
	return nil
}

// UnusableErr returns the FailedPrecondition error that explains why t cannot be rotated: it was used,
// revoked, or (neither) has expired. It does not look at the clock: the caller has decided that t is
// unusable.
func (t RefreshToken) UnusableErr() error {
	switch {
	case !t.UsedAt.IsZero():
		return apperr.Errorf(apperr.FailedPrecondition, "refresh token already used")
	case !t.RevokedAt.IsZero():
		return apperr.Errorf(apperr.FailedPrecondition, "refresh token revoked")
	default:
		return apperr.Errorf(apperr.FailedPrecondition, "refresh token expired")
	}
}

// Logout ends the session of a refresh token: its whole family is revoked.
//
// Idempotent and silent: an unknown, expired or already revoked token succeeds as well, so that the call
// tells nothing about tokens. A logout activity is recorded only when a live session ended.
//
// Errors: Invalid for an empty or oversized token.
func (s *Service) Logout(ctx context.Context, token string) error {
	if err := checkRefreshToken(token); err != nil {
		return err
	}
	now := s.clock()
	ended := false
	userID := ""
	err := s.store.UpdateRefreshToken(ctx, hashRefreshToken(token), func(t RefreshToken, _ User) (TokenChange, error) {
		ended = t.RevokedAt.IsZero() && now.Before(t.ExpiresAt)
		if !ended {
			return TokenChange{}, nil
		}
		userID = t.UserID
		return TokenChange{RevokeFamilyAt: now, RevokeUserBefore: now, Activity: []Activity{s.activity(t.UserID, ActivityLogout, t.UserID)}}, nil
	})
	if apperr.CodeOf(err) == apperr.NotFound {
		return nil
	}
	if err != nil {
		return fmt.Errorf("end session: %w", err)
	}
	if ended {
		s.hub.nudge()
		s.refreshSubject(ctx, userID)
	}
	return nil
}

func checkRefreshToken(token string) error {
	var v violations
	switch {
	case token == "":
		v.add("refresh_token", "is required")
	case len(token) > MaxRefreshTokenLen:
		v.add("refresh_token", "must be at most 512 characters")
	}
	return v.err()
}

// newRefreshToken returns a new opaque token and its stored form.
func newRefreshToken(userID, familyID string, now, expires time.Time) (string, RefreshToken) {
	b := make([]byte, refreshTokenBytes)
	rand.Read(b) // never fails: crypto/rand crashes the program rather than return an error
	token := base64.RawURLEncoding.EncodeToString(b)
	return token, RefreshToken{
		Hash:      hashRefreshToken(token),
		FamilyID:  familyID,
		UserID:    userID,
		IssuedAt:  now,
		ExpiresAt: expires,
	}
}

// hashRefreshToken returns the SHA-256 of token. A fast hash is right here, unlike for passwords: the
// token has 256 bits of entropy, so nothing can be gained by guessing offline.
func hashRefreshToken(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// PurgeBatch is how many expired refresh tokens one statement of PurgeExpiredSessions deletes.
const PurgeBatch = 1000

// PurgeInterval is how often RunPurge deletes expired refresh tokens.
const PurgeInterval = time.Hour

// PurgeExpiredSessions deletes every refresh token that has expired (every login and every rotation
// stores one, and nothing else ever deletes them), in batches of PurgeBatch, and returns how many it
// deleted. A family expires as a whole (rotation never extends it), and an expired token is refused
// exactly as an unknown one ("invalid refresh token"; Logout accepts both silently), so deleting it
// changes no answer; reuse detection needs only the tokens of live families.
func (s *Service) PurgeExpiredSessions(ctx context.Context) (int, error) {
	now := s.clock()
	total := 0
	for {
		n, err := s.store.DeleteExpiredRefreshTokens(ctx, now, PurgeBatch)
		total += n
		if err != nil {
			return total, fmt.Errorf("purge expired refresh tokens: %w", err)
		}
		if n < PurgeBatch {
			return total, nil
		}
	}
}

// RunPurge calls PurgeExpiredSessions at once and then every PurgeInterval until ctx is done, logging
// what it deleted (one line per run that deleted something) and failures (retried at the next run); then
// it returns nil. Every replica may run it: the deletion is idempotent.
func (s *Service) RunPurge(ctx context.Context) error {
	for {
		n, err := s.PurgeExpiredSessions(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			s.logger.ErrorContext(ctx, "identity: purge expired refresh tokens failed", "error", err.Error(), "deleted", n, "retry_in", PurgeInterval)
		case n > 0:
			s.logger.InfoContext(ctx, "identity: purged expired refresh tokens", "deleted", n)
		}
		t := time.NewTimer(PurgeInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}
