// Package identity is the domain of lastmile's identity service: users, their roles and status, sessions
// (rotating refresh-token families), signing keys and the activity log. It knows nothing about Protobuf, SQL
// or gRPC; the transport adapter (grpcapi) and the stores (sqlite, postgres) depend on it, not the other way.
package identity

import (
	"context"
	"time"

	"lastmile/internal/platform/auth"
)

// Role is what a user may do. The values are the role names carried in access tokens.
type Role string

// The roles.
const (
	RoleCustomer   Role = auth.RoleCustomer
	RoleCourier    Role = auth.RoleCourier
	RoleDispatcher Role = auth.RoleDispatcher
	RoleAdmin      Role = auth.RoleAdmin
)

// Valid reports whether r is one of the defined roles.
func (r Role) Valid() bool {
	switch r {
	case RoleCustomer, RoleCourier, RoleDispatcher, RoleAdmin:
		return true
	}
	return false
}

// Status is a user's lifecycle state.
type Status string

// The statuses. Deleted users are kept (soft delete) so that ids stay unique and history stays readable.
const (
	StatusActive    Status = "active"
	StatusSuspended Status = "suspended"
	StatusDeleted   Status = "deleted"
)

// User is a person who can log in.
type User struct {
	// ID is a UUIDv7 (time-ordered, so keyset pagination by id follows creation order).
	ID string
	// Email is unique case-insensitively across all users, deleted ones included: an address is never
	// reused, so old tokens, logs and activity cannot be confused with a new owner.
	Email string
	// Username is optional; when set it is unique case-insensitively, like Email.
	Username    string
	DisplayName string
	Role        Role
	Status      Status
	// PasswordHash is an Argon2id hash in PHC string format. It never leaves the identity service.
	PasswordHash string
	CreatedAt    time.Time
	UpdatedAt    time.Time
	// DeletedAt and LastLoginAt are zero when unset.
	DeletedAt   time.Time
	LastLoginAt time.Time
	// Version increases by one on every update; it is the etag and the optimistic-concurrency check.
	Version int64
	// RevokedBefore, when set, revokes every access token of the user issued at or before it, to the
	// second (an access token's "iat" has a resolution of one second; the Service issues no token in that
	// second afterwards). Suspension, deletion, a role or password change and logout set it; every
	// authenticated call checks it (auth.Subjects).
	RevokedBefore time.Time
}

// Lookup selects one user by exactly one of its keys. Email and Username match case-insensitively.
type Lookup struct {
	ID       string
	Email    string
	Username string
}

// Filter narrows ListUsers and StreamUsers. Zero fields do not filter. Search matches a case-insensitive
// substring of email, username or display name. Deleted users are listed only when Status is StatusDeleted.
type Filter struct {
	Status Status
	Role   Role
	Search string
}

// RefreshToken is one link of a session's rotation chain. The token itself is never stored, only its
// SHA-256 hash. All tokens descending from one login share a FamilyID; presenting a token that was already
// rotated (reuse) revokes the whole family, because either the client or an attacker holds a stolen copy.
type RefreshToken struct {
	// Hash is the SHA-256 of the opaque token string.
	Hash     []byte
	FamilyID string
	UserID   string
	IssuedAt time.Time
	// ExpiresAt bounds the whole family's life as well: rotation never extends it past the login's limit.
	ExpiresAt time.Time
	// UsedAt is set when the token was rotated; a second use is reuse.
	UsedAt time.Time
	// RevokedAt is set by logout, reuse detection, a password change or deletion of the user.
	RevokedAt time.Time
}

// UserTx is what a Store.UpdateUser closure may read inside its transaction, about other users.
type UserTx interface {
	// CountActiveAdmins returns how many users are active admins, and locks them until the transaction
	// ends: two updates that each take away one of the last two admins then run one after the other, and
	// the second sees the first's change.
	CountActiveAdmins(ctx context.Context) (int, error)
}

// TokenChange is what a Store.UpdateRefreshToken closure decides to write. The zero value writes nothing.
type TokenChange struct {
	// UsedAt, when set, marks the token the closure was given as used at that time.
	UsedAt time.Time
	// Next, when its Hash is set, is stored as a new token.
	Next RefreshToken
	// RevokeFamilyAt, when set, revokes every token of the given token's family that is not revoked yet.
	RevokeFamilyAt time.Time
	// Activity is appended in the same transaction.
	Activity []Activity
	// RevokeUserBefore, when set, becomes the token owner's User.RevokedBefore (logout ends the user's
	// access tokens as well as the session).
	RevokeUserBefore time.Time
}

// SigningKey is an Ed25519 key that signs access tokens. The newest active key signs; older keys stay
// published in the JWKS until RetireAt so that tokens they signed keep verifying until they expire.
type SigningKey struct {
	// KID is the key id in JWT headers and the JWKS.
	KID string
	// PrivateKey is the 32-byte Ed25519 seed. It never leaves the identity service.
	PrivateKey []byte
	// PublicKey is the 32-byte Ed25519 public key.
	PublicKey []byte
	CreatedAt time.Time
	// RetireAt is when the key leaves the JWKS; zero while it is the current key.
	RetireAt time.Time
}

// ActivityType classifies an activity event.
type ActivityType string

// The activity types, as pushed to UserActivity subscribers.
const (
	ActivityLogin           ActivityType = "login"
	ActivityLogout          ActivityType = "logout"
	ActivityProfileChanged  ActivityType = "profile_changed"
	ActivityPasswordChanged ActivityType = "password_changed"
	ActivityRoleChanged     ActivityType = "role_changed"
	ActivityStatusChanged   ActivityType = "status_changed"
	ActivityDeleted         ActivityType = "deleted"
)

// Activity is one entry of the activity log. It is written in the same transaction as the change it
// describes, to the store's activity history and to identity's event log (EncodeActivity), from which
// every replica's activity feed pushes it to live subscribers.
type Activity struct {
	// Seq is assigned by the store, increasing in commit order per store (the activity history's order;
	// delivered entries carry the event log's sequence number instead).
	Seq           int64
	ID            string
	UserID        string
	Type          ActivityType
	At            time.Time
	ActorUserID   string
	ChangedFields []string
}

// Store persists identity data. It holds no business rule: where a rule needs a consistent view, the Store
// reads and locks, runs a closure of the Service and writes what the closure returns. One implementation,
// sqlstore.Store, runs on SQLite (sqlite.New) and PostgreSQL (postgres.New); storetest.Run checks it on
// both. Errors carry apperr codes as documented per method; any other error is Internal.
type Store interface {
	// CreateUser inserts u. Conflict when the email or the username is already taken (case-insensitively,
	// deleted users included).
	CreateUser(ctx context.Context, u User) error
	// CreateUsers inserts a batch in one transaction, each user under its own savepoint: the result has one
	// error per user (nil, Conflict or Invalid), and a failed user never aborts the others.
	CreateUsers(ctx context.Context, users []User) ([]error, error)
	// GetUser returns the user that l selects, deleted ones included. NotFound when there is none.
	GetUser(ctx context.Context, l Lookup) (User, error)
	// UpdateUser runs change, in one transaction, on user id, read and locked against every other
	// UpdateUser of that user until the transaction ends, and writes the user and the activity that change
	// returns. A returned user with cur's Version means "nothing to do": nothing is written. change reads
	// what its rules need about other users through tx. When change returns an error nothing is written
	// and the error is returned as is. change may run more than once (a transaction the database aborted
	// to break a deadlock is run again), so it must have no effect outside its result. NotFound when no
	// user has id; Conflict when the new email or username is taken; Invalid when the change holds a user
	// or activity no store can hold.
	UpdateUser(ctx context.Context, id string, change func(tx UserTx, cur User) (User, []Activity, error)) error
	// ListUsers returns up to limit users matching f with ID greater than after (keyset pagination, "" for
	// the first page), ordered by ID.
	ListUsers(ctx context.Context, f Filter, after string, limit int) ([]User, error)
	// CountUsers returns how many users match f.
	CountUsers(ctx context.Context, f Filter) (int, error)

	// CreateRefreshToken stores a new token (the first of a family, at login). Invalid for a token no store
	// can hold; NotFound when its user does not exist; Conflict when its hash is already stored.
	CreateRefreshToken(ctx context.Context, t RefreshToken) error
	// GetRefreshToken returns the token with hash. NotFound when unknown.
	GetRefreshToken(ctx context.Context, hash []byte) (RefreshToken, error)
	// UpdateRefreshToken runs change, in one transaction, on the token with hash and the user it belongs
	// to, both read and locked against every other UpdateRefreshToken of that user until the transaction
	// ends, and writes the TokenChange that change returns. When change returns an error nothing is
	// written and the error is returned as is. change may run more than once (a transaction the database
	// aborted to break a deadlock is run again), so it must have no effect outside its result. NotFound
	// when hash is unknown; Invalid when the change holds a token or activity no store can hold; Conflict
	// when TokenChange.Next's hash is already stored.
	UpdateRefreshToken(ctx context.Context, hash []byte, change func(t RefreshToken, owner User) (TokenChange, error)) error
	// RevokeFamily revokes every token of familyID at `at`. Idempotent: tokens revoked earlier keep their
	// revocation time.
	RevokeFamily(ctx context.Context, familyID string, at time.Time) error
	// RevokeUserTokens revokes every token of userID at `at`. Idempotent, like RevokeFamily.
	RevokeUserTokens(ctx context.Context, userID string, at time.Time) error
	// DeleteExpiredRefreshTokens deletes up to limit tokens (limit > 0) whose ExpiresAt is at or before
	// `before`, and returns how many it deleted: fewer than limit when no more are left.
	DeleteExpiredRefreshTokens(ctx context.Context, before time.Time, limit int) (int, error)

	// AppendActivity appends entries outside a user update, to the history and the event log.
	AppendActivity(ctx context.Context, activity []Activity) error
	// ActivitySince returns up to limit entries with Seq greater than after, in Seq order (the activity history).
	ActivitySince(ctx context.Context, after int64, limit int) ([]Activity, error)

	// SaveSigningKey inserts k or updates its RetireAt.
	SaveSigningKey(ctx context.Context, k SigningKey) error
	// SigningKeys returns every key not retired before `at`, newest first.
	SigningKeys(ctx context.Context, at time.Time) ([]SigningKey, error)
}
