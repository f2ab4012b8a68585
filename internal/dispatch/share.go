package dispatch

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
)

// Share link limits.
const (
	// DefaultShareTTL is how long a share link works when the caller does not say.
	DefaultShareTTL = 24 * time.Hour
	// MinShareTTL and MaxShareTTL bound the lifetime a caller may ask for.
	MinShareTTL = time.Minute
	MaxShareTTL = 7 * 24 * time.Hour
	// ShareKeySize is the length of a share key's secret, in bytes.
	ShareKeySize = 32
	// shareKeyRefresh is how long a replica signs with the key it last read as the newest before reading
	// again, so that a key added on one replica is used by every replica within it.
	shareKeyRefresh = time.Minute
)

// ShareKey is a secret that signs share links. Keys live in storage that every replica shares, so a link
// made on one replica works on all. The newest key (highest ID) signs new links; every key verifies the
// links it signed, so a newer key can be added without breaking the links in flight, and deleting a key
// revokes every link it signed. Replicas see either change within a minute.
type ShareKey struct {
	ID         uint32
	Secret     []byte
	CreateTime time.Time
}

// ShareKeys keeps the share keys. Implementations: sqlstore.ShareKeys on SQLite and PostgreSQL.
type ShareKeys interface {
	// CurrentShareKey returns the newest key, storing first as the first key when there is none yet.
	// Replicas that call it at once for the first time all get the same key.
	CurrentShareKey(ctx context.Context, first ShareKey) (ShareKey, error)
	// ShareKey returns the key with id. NotFound when there is none.
	ShareKey(ctx context.Context, id uint32) (ShareKey, error)
}

// ShareLink is a link that lets whoever holds it follow one task, without an account, until it expires.
type ShareLink struct {
	TaskID string
	// Token is the signed token: URL-safe base64 without padding.
	Token      string
	ExpireTime time.Time
	// Path is the task's tracking page with the token in the fragment: /track/{id}#shareToken={token}.
	Path string
}

// A share token is the URL-safe base64 (no padding) of
//
//	version (1 byte, 1) | key id (4 bytes, big endian) | task id (16 bytes, the UUID) |
//	expiry (8 bytes, Unix seconds, big endian) | HMAC-SHA256(key, shareMACContext || the 29 bytes before)
//
// 61 bytes, 82 characters. The MAC binds the task and the expiry to the deployment's key; the key id
// says which key, so that keys can be added without breaking the links in flight.
const (
	shareTokenVersion = 1
	sharePayloadSize  = 1 + 4 + 16 + 8
	shareTokenSize    = sharePayloadSize + sha256.Size
	// shareMACContext separates share-link MACs from any other use a key could be put to.
	shareMACContext = "lastmile.dispatch.share-link.v1\x00"
)

var shareTokenChars = base64.RawURLEncoding.EncodedLen(shareTokenSize)

// shareClaims is what a share token says.
type shareClaims struct {
	KeyID  uint32
	TaskID string
	Expire time.Time
}

// signShareToken returns the token of c signed with key.
func signShareToken(key ShareKey, c shareClaims) (string, error) {
	id, err := uuid.Parse(c.TaskID)
	if err != nil {
		return "", fmt.Errorf("share token for task %q: %w", c.TaskID, err)
	}
	b := make([]byte, sharePayloadSize, shareTokenSize)
	b[0] = shareTokenVersion
	binary.BigEndian.PutUint32(b[1:5], key.ID)
	copy(b[5:21], id[:])
	binary.BigEndian.PutUint64(b[21:29], uint64(c.Expire.Unix()))
	b = append(b, shareMAC(key.Secret, b)...)
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func shareMAC(secret, payload []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(shareMACContext))
	m.Write(payload)
	return m.Sum(nil)
}

// parseShareToken decodes tok without checking its MAC: ok is false when it is not a well-formed token.
func parseShareToken(tok string) (c shareClaims, payload, mac []byte, ok bool) {
	if len(tok) != shareTokenChars {
		return shareClaims{}, nil, nil, false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(tok)
	if err != nil || len(b) != shareTokenSize || b[0] != shareTokenVersion {
		return shareClaims{}, nil, nil, false
	}
	id, err := uuid.FromBytes(b[5:21])
	if err != nil {
		return shareClaims{}, nil, nil, false
	}
	expire := binary.BigEndian.Uint64(b[21:29])
	if expire > uint64(maxTime.Unix()) {
		return shareClaims{}, nil, nil, false
	}
	c = shareClaims{KeyID: binary.BigEndian.Uint32(b[1:5]), TaskID: id.String(), Expire: time.Unix(int64(expire), 0).UTC()}
	return c, b[:sharePayloadSize], b[sharePayloadSize:], true
}

// shareKeyCache keeps the keys this replica has read, each for shareKeyRefresh: a key added since is
// signing on every replica within that time, and a key deleted from storage (to revoke every link it
// signed) stops verifying within it too.
type shareKeyCache struct {
	mu           sync.Mutex
	byID         map[uint32]cachedShareKey
	current      ShareKey
	currentUntil time.Time
}

type cachedShareKey struct {
	key   ShareKey
	until time.Time
}

// currentShareKey returns the key that signs new links, creating the deployment's first key on first use.
func (s *Service) currentShareKey(ctx context.Context) (ShareKey, error) {
	now := s.now()
	c := &s.shareKeyCache
	c.mu.Lock()
	if c.current.ID != 0 && now.Before(c.currentUntil) {
		k := c.current
		c.mu.Unlock()
		return k, nil
	}
	c.mu.Unlock()
	secret := make([]byte, ShareKeySize)
	if _, err := rand.Read(secret); err != nil {
		return ShareKey{}, fmt.Errorf("make share key: %w", err)
	}
	k, err := s.shareKeys.CurrentShareKey(ctx, ShareKey{ID: 1, Secret: secret, CreateTime: storedTime(now)})
	if err != nil {
		return ShareKey{}, fmt.Errorf("read the current share key: %w", err)
	}
	if k.ID == 0 || len(k.Secret) < ShareKeySize {
		return ShareKey{}, fmt.Errorf("read the current share key: key %d has a %d-byte secret", k.ID, len(k.Secret))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.current, c.currentUntil = k, now.Add(shareKeyRefresh)
	return k, nil
}

// shareKey returns the key with id; found is false when there is none.
func (s *Service) shareKey(ctx context.Context, id uint32) (k ShareKey, found bool, err error) {
	now := s.now()
	c := &s.shareKeyCache
	c.mu.Lock()
	e, ok := c.byID[id]
	c.mu.Unlock()
	if ok && now.Before(e.until) {
		return e.key, true, nil
	}
	k, err = s.shareKeys.ShareKey(ctx, id)
	switch {
	case apperr.CodeOf(err) == apperr.NotFound:
		return ShareKey{}, false, nil
	case err != nil:
		return ShareKey{}, false, fmt.Errorf("read share key %d: %w", id, err)
	case len(k.Secret) < ShareKeySize:
		return ShareKey{}, false, fmt.Errorf("read share key %d: a %d-byte secret", id, len(k.Secret))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byID == nil {
		c.byID = map[uint32]cachedShareKey{}
	}
	c.byID[id] = cachedShareKey{key: k, until: now.Add(shareKeyRefresh)}
	return k, true, nil
}

// CreateShareLink creates a link that lets whoever holds it follow task id until ttl from now (0 means
// DefaultShareTTL; MinShareTTL to MaxShareTTL). The task's customer, dispatchers and administrators may
// create one: couriers and services get PermissionDenied, other callers NotFound for a task they may not
// see. Creating a link writes nothing but, on the deployment's first link, its first share key.
func (s *Service) CreateShareLink(ctx context.Context, id string, ttl time.Duration) (ShareLink, error) {
	p := auth.FromContext(ctx)
	if p.Kind != auth.User || p.HasRole(auth.RoleCourier) {
		return ShareLink{}, apperr.Errorf(apperr.PermissionDenied, "only the task's customer, dispatchers and administrators share tasks")
	}
	var v violations
	id = v.id("task_id", id)
	switch {
	case ttl == 0:
		ttl = DefaultShareTTL
	case ttl < MinShareTTL || ttl > MaxShareTTL:
		v.add("ttl", "must be between 1 minute and 7 days")
	}
	if err := v.err(); err != nil {
		return ShareLink{}, err
	}
	if s.shareKeys == nil {
		return ShareLink{}, apperr.Errorf(apperr.FailedPrecondition, "share links are not enabled on this server")
	}
	t, err := s.visibleTask(ctx, id)
	if err != nil {
		return ShareLink{}, err
	}
	key, err := s.currentShareKey(ctx)
	if err != nil {
		return ShareLink{}, err
	}
	expire := s.now().Add(ttl).UTC().Truncate(time.Second)
	tok, err := signShareToken(key, shareClaims{KeyID: key.ID, TaskID: t.ID, Expire: expire})
	if err != nil {
		return ShareLink{}, err
	}
	return ShareLink{TaskID: t.ID, Token: tok, ExpireTime: expire, Path: "/track/" + t.ID + "#shareToken=" + tok}, nil
}

// sharedTask returns the task with id, unredacted, and the link's expiry when token is a valid share link
// to it that has not expired; NotFound otherwise, as for a task that does not exist, so that a token
// tells nothing about other tasks and a tampered one nothing about why it failed.
func (s *Service) sharedTask(ctx context.Context, id, token string) (Task, time.Time, error) {
	n, ok := normalizeID(id)
	if !ok {
		return Task{}, time.Time{}, apperr.InvalidFields("invalid request", apperr.FieldViolation{Field: "id", Description: "must be a UUID"})
	}
	c, payload, mac, ok := parseShareToken(token)
	if !ok || c.TaskID != n || s.shareKeys == nil {
		return Task{}, time.Time{}, errTaskNotFound
	}
	key, found, err := s.shareKey(ctx, c.KeyID)
	if err != nil {
		return Task{}, time.Time{}, err
	}
	if !found || !hmac.Equal(mac, shareMAC(key.Secret, payload)) || !s.now().Before(c.Expire) {
		return Task{}, time.Time{}, errTaskNotFound
	}
	t, err := s.store.GetTask(ctx, n)
	if err != nil {
		return Task{}, time.Time{}, notFoundOr(err, "get task "+n)
	}
	return t, c.Expire, nil
}

// GetSharedTask returns the task with id in the share view (Task.Shared) when token is a valid,
// unexpired share link to it, whoever calls; NotFound otherwise.
func (s *Service) GetSharedTask(ctx context.Context, id, token string) (Task, error) {
	t, _, err := s.sharedTask(ctx, id, token)
	if err != nil {
		return Task{}, err
	}
	return t.Shared(), nil
}

// Shared returns what a share link shows of t, to whoever holds it: the state, the stops' locations,
// addresses and time windows, priority, size, proof requirements, cancel and failure reasons, times,
// version, and the history's states, times and actors, of the entries the customer sees (customerHistory:
// a link shows no more than the customer's own view, so not the offers other couriers declined or let
// expire, nor their hand-backs). It is built field by field, so that a field added
// to Task later stays private until someone decides to share it. Left out: the customer, the creator and
// request, the courier's id, the notes, the stops' contacts and instructions, the delivery code, the
// parcel barcode, the offers, the proofs, and who did what in the history.
func (t Task) Shared() Task {
	out := Task{
		ID:            t.ID,
		State:         t.State,
		Pickup:        t.Pickup.shared(),
		Dropoff:       t.Dropoff.shared(),
		Priority:      t.Priority,
		Size:          t.Size,
		CancelReason:  t.CancelReason,
		FailureReason: t.FailureReason,
		CreateTime:    t.CreateTime,
		UpdateTime:    t.UpdateTime,
		AssignTime:    t.AssignTime,
		PickupTime:    t.PickupTime,
		DeliverTime:   t.DeliverTime,
		FinishTime:    t.FinishTime,
		Version:       t.Version,
	}
	out.ProofRequirements = append(out.ProofRequirements, t.ProofRequirements...)
	for _, h := range customerHistory(slices.Clone(t.History), t) {
		out.History = append(out.History, StateChange{State: h.State, At: h.At, Actor: h.Actor})
	}
	return out
}

// shared returns what a share link shows of a stop: where it is and when.
func (st Stop) shared() Stop {
	out := Stop{Location: st.Location, Address: st.Address}
	if st.Window != nil {
		w := *st.Window
		out.Window = &w
	}
	return out
}
