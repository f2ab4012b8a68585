// Package password hashes and verifies user passwords with Argon2id (RFC 9106), storing them in the PHC
// string format:
//
//	$argon2id$v=19$m=19456,t=2,p=1$<salt, base64>$<hash, base64>
//
// The default cost is the first Argon2id configuration of the OWASP Password Storage Cheat Sheet
// (https://cheatsheetseries.owasp.org/cheatsheets/Password_Storage_Cheat_Sheet.html, "Argon2id"): 19 MiB
// of memory, 2 iterations, 1 degree of parallelism; with a 16-byte random salt and a 32-byte key. Every
// hash records its own parameters, so raising the cost later keeps old hashes verifiable, and Verify says
// when a hash should be replaced (needsRehash).
//
// Each hash costs tens of milliseconds of CPU and 19 MiB of memory, which makes login an easy
// denial-of-service target. A Hasher therefore runs at most a fixed number of hashes at once (by default
// one per CPU); callers beyond that wait in line for as long as their context allows and are then refused
// with apperr.ResourceExhausted (with a RetryAfter). New hashes (Hash: sign-ups, password changes) and
// verifications (Verify, DummyVerify: logins) wait in separate lines of bounded length, a caller finding
// its line full is refused at once, and new hashes may be held to a share of the slots
// (Config.HashSlots), so that a flood of sign-ups cannot starve logins. Rate limiting per account and per
// client, which bounds who gets into the lines, is the identity service's job.
//
// A login for an unknown user must cost as much as one with a wrong password, or response times reveal
// which accounts exist: the identity service calls DummyVerify when it finds no user.
//
// Check is the policy for new passwords (NIST SP 800-63B): MinLength to MaxLength characters, not
// common, not guessable. Length is the one measure of a password's length, used by Check and the Hasher
// alike, so that every password the policy accepts can be hashed.
package password

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"

	"lastmile/internal/platform/apperr"
)

// Bounds on parameters, for the configured ones and, above all, for those read from a stored hash: a
// tampered hash with m=4 TiB must be refused, not attempted.
const (
	maxMemoryKiB    = 1 << 20 // 1 GiB
	maxIterations   = 32
	maxParallelism  = 16
	minSaltBytes    = 8 // RFC 9106, section 3.1
	maxSaltBytes    = 64
	minKeyBytes     = 16
	maxKeyBytes     = 64
	maxEncodedBytes = 512
)

// retryAfter is what a refused caller is told to wait: a few hashes' time.
const retryAfter = time.Second

// Params are Argon2id cost parameters.
type Params struct {
	// Memory is the memory cost in KiB, at least 8 × Parallelism.
	Memory uint32
	// Iterations is the number of passes over the memory, at least 1.
	Iterations uint32
	// Parallelism is the number of lanes (threads), at least 1.
	Parallelism uint8
	// SaltLength is the length of the random salt in bytes.
	SaltLength uint32
	// KeyLength is the length of the derived key (the stored hash) in bytes.
	KeyLength uint32
}

// DefaultParams returns the OWASP Password Storage Cheat Sheet's first Argon2id configuration: m=19456
// (19 MiB), t=2, p=1, with a 16-byte salt and a 32-byte key.
func DefaultParams() Params {
	return Params{Memory: 19456, Iterations: 2, Parallelism: 1, SaltLength: 16, KeyLength: 32}
}

// validate checks p against the bounds every hash must respect.
func (p Params) validate() error {
	switch {
	case p.Parallelism < 1 || p.Parallelism > maxParallelism:
		return fmt.Errorf("parallelism %d outside 1..%d", p.Parallelism, maxParallelism)
	case p.Memory < 8*uint32(p.Parallelism) || p.Memory > maxMemoryKiB:
		return fmt.Errorf("memory %d KiB outside %d..%d", p.Memory, 8*uint32(p.Parallelism), maxMemoryKiB)
	case p.Iterations < 1 || p.Iterations > maxIterations:
		return fmt.Errorf("iterations %d outside 1..%d", p.Iterations, maxIterations)
	case p.SaltLength < minSaltBytes || p.SaltLength > maxSaltBytes:
		return fmt.Errorf("salt length %d outside %d..%d", p.SaltLength, minSaltBytes, maxSaltBytes)
	case p.KeyLength < minKeyBytes || p.KeyLength > maxKeyBytes:
		return fmt.Errorf("key length %d outside %d..%d", p.KeyLength, minKeyBytes, maxKeyBytes)
	}
	return nil
}

// Config configures a Hasher.
type Config struct {
	// Params are the parameters of new hashes. The zero value means DefaultParams. Tests use tiny ones.
	Params Params
	// MaxConcurrent bounds how many hashes run at once. Default runtime.NumCPU().
	MaxConcurrent int
	// HashSlots bounds how many of the MaxConcurrent slots Hash (new passwords: sign-ups, password
	// changes) may hold at once; the others stay free for Verify and DummyVerify (logins). Zero means all
	// of them; more than MaxConcurrent is an error.
	HashSlots int
	// MaxWaiting bounds how many callers may wait for a slot, for Hash and for Verify and DummyVerify
	// each; a caller beyond it is refused at once. Default 8 × MaxConcurrent.
	MaxWaiting int
}

// Hasher hashes and verifies passwords. It is safe for concurrent use.
type Hasher struct {
	params Params
	// slots holds a token per running hash; hashes and verifies wait for one in their own lane.
	slots          chan struct{}
	hashes, checks *lane
	// derive computes the Argon2id key; tests replace it to observe concurrency.
	derive func(password, salt []byte, p Params) []byte
	// dummySalt and dummyKey are what DummyVerify compares against: a hash of nothing anyone knows.
	dummySalt, dummyKey []byte
}

// New returns a Hasher for cfg.
func New(cfg Config) (*Hasher, error) {
	if cfg.Params == (Params{}) {
		cfg.Params = DefaultParams()
	}
	if err := cfg.Params.validate(); err != nil {
		return nil, fmt.Errorf("password hasher: %w", err)
	}
	switch {
	case cfg.MaxConcurrent < 0:
		return nil, errors.New("password hasher: negative MaxConcurrent")
	case cfg.MaxConcurrent == 0:
		cfg.MaxConcurrent = runtime.NumCPU()
	}
	switch {
	case cfg.HashSlots < 0 || cfg.HashSlots > cfg.MaxConcurrent:
		return nil, fmt.Errorf("password hasher: HashSlots %d outside 0..%d", cfg.HashSlots, cfg.MaxConcurrent)
	case cfg.MaxWaiting < 0:
		return nil, errors.New("password hasher: negative MaxWaiting")
	case cfg.MaxWaiting == 0:
		cfg.MaxWaiting = 8 * cfg.MaxConcurrent
	}
	h := &Hasher{
		params:    cfg.Params,
		slots:     make(chan struct{}, cfg.MaxConcurrent),
		hashes:    newLane("password hashes", "too many concurrent sign-ups and password changes, try again shortly", cfg.HashSlots, cfg.MaxWaiting),
		checks:    newLane("password checks", "too many concurrent logins, try again shortly", 0, cfg.MaxWaiting),
		derive:    argon2idKey,
		dummySalt: make([]byte, cfg.Params.SaltLength),
		dummyKey:  make([]byte, cfg.Params.KeyLength),
	}
	rand.Read(h.dummySalt)
	rand.Read(h.dummyKey)
	return h, nil
}

func argon2idKey(password, salt []byte, p Params) []byte {
	return argon2.IDKey(password, salt, p.Iterations, p.Memory, p.Parallelism, p.KeyLength)
}

// Hash returns the PHC-format Argon2id hash of password with a fresh random salt. It returns an
// apperr.Invalid error for a password that is empty, longer than MaxLength (as Length counts: the same
// rule as Check's, so that every password Check accepts can be hashed) or contains a NUL byte,
// and an apperr.ResourceExhausted error when ctx ends while waiting for a free hashing slot or too many
// callers already wait.
func (h *Hasher) Hash(ctx context.Context, password string) (string, error) {
	if err := checkPassword(password); err != nil {
		return "", err
	}
	salt := make([]byte, h.params.SaltLength)
	rand.Read(salt)
	key, err := h.run(ctx, h.hashes, []byte(password), salt, h.params)
	if err != nil {
		return "", err
	}
	return encode(h.params, salt, key), nil
}

// Verify reports whether password matches encoded, a hash made by Hash (with any parameters within
// bounds), comparing in constant time. needsRehash is true when the password matches but encoded was
// made with other parameters than the Hasher's: the caller should store a new Hash of the password it
// just proved correct. Verify returns an apperr.Invalid error for a password Hash would refuse, an
// apperr.Internal error for an encoded hash that is malformed or out of bounds (a corrupt or tampered
// record; nothing is computed for it), and an apperr.ResourceExhausted error when ctx ends while waiting
// for a free hashing slot or too many callers already wait.
func (h *Hasher) Verify(ctx context.Context, password, encoded string) (ok, needsRehash bool, err error) {
	if err := checkPassword(password); err != nil {
		return false, false, err
	}
	p, salt, want, err := decode(encoded)
	if err != nil {
		return false, false, apperr.Wrap(apperr.Internal, err, "internal error")
	}
	got, err := h.run(ctx, h.checks, []byte(password), salt, p)
	if err != nil {
		return false, false, err
	}
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return false, false, nil
	}
	return true, p != h.params, nil
}

// DummyVerify does the work of verifying password against a hash made with the Hasher's parameters, and
// throws the result away. The identity service calls it when a login names no existing user, so that the
// answer takes as long as a wrong password's and reveals nothing about which accounts exist. Its errors
// are Verify's, for the same inputs and conditions.
func (h *Hasher) DummyVerify(ctx context.Context, password string) error {
	if err := checkPassword(password); err != nil {
		return err
	}
	got, err := h.run(ctx, h.checks, []byte(password), h.dummySalt, h.params)
	if err != nil {
		return err
	}
	subtle.ConstantTimeCompare(got, h.dummyKey)
	return nil
}

func checkPassword(password string) error {
	switch {
	case password == "":
		return apperr.InvalidFields("invalid password", apperr.FieldViolation{Field: "password", Description: "must not be empty"})
	case Length(password) > MaxLength:
		// Argon2 hashes any length at the same cost, but nobody types more, and the bound keeps megabyte
		// "passwords" out of the hasher.
		return apperr.InvalidFields("invalid password", apperr.FieldViolation{Field: "password", Description: ErrTooLong.Error()})
	case strings.IndexByte(password, 0) >= 0:
		return apperr.InvalidFields("invalid password", apperr.FieldViolation{Field: "password", Description: "must not contain NUL"})
	}
	return nil
}

var b64 = base64.RawStdEncoding.Strict()

func encode(p Params, salt, key []byte) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Iterations, p.Parallelism, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// decode parses a PHC-format Argon2id hash, accepting only the canonical form encode writes and
// parameters within bounds.
func decode(encoded string) (p Params, salt, key []byte, err error) {
	if len(encoded) > maxEncodedBytes {
		return Params{}, nil, nil, fmt.Errorf("password hash of %d bytes", len(encoded))
	}
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" {
		return Params{}, nil, nil, errors.New("password hash is not in PHC format")
	}
	if parts[1] != "argon2id" {
		return Params{}, nil, nil, fmt.Errorf("password hash algorithm %.16q, want argon2id", parts[1])
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return Params{}, nil, nil, fmt.Errorf("password hash version %.16q, want v=%d", parts[2], argon2.Version)
	}
	m, t, par, err := decodeParams(parts[3])
	if err != nil {
		return Params{}, nil, nil, fmt.Errorf("password hash parameters: %w", err)
	}
	if salt, err = b64.DecodeString(parts[4]); err != nil {
		return Params{}, nil, nil, fmt.Errorf("password hash salt: %w", err)
	}
	if key, err = b64.DecodeString(parts[5]); err != nil {
		return Params{}, nil, nil, fmt.Errorf("password hash key: %w", err)
	}
	p = Params{Memory: m, Iterations: t, Parallelism: par, SaltLength: uint32(len(salt)), KeyLength: uint32(len(key))}
	if err := p.validate(); err != nil {
		return Params{}, nil, nil, fmt.Errorf("password hash parameters: %w", err)
	}
	return p, salt, key, nil
}

// decodeParams parses "m=<memory>,t=<iterations>,p=<parallelism>", in that order, in canonical decimal.
func decodeParams(s string) (m, t uint32, p uint8, err error) {
	fields := strings.Split(s, ",")
	if len(fields) != 3 {
		return 0, 0, 0, fmt.Errorf("%d fields, want m, t and p", len(fields))
	}
	var vals [3]uint64
	for i, name := range []string{"m", "t", "p"} {
		v, ok := strings.CutPrefix(fields[i], name+"=")
		if !ok {
			return 0, 0, 0, fmt.Errorf("field %d is not %s=", i+1, name)
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || strconv.FormatUint(n, 10) != v {
			return 0, 0, 0, fmt.Errorf("%s is not a canonical 32-bit number", name)
		}
		vals[i] = n
	}
	if vals[2] > 255 {
		return 0, 0, 0, fmt.Errorf("p=%d exceeds 255", vals[2])
	}
	return uint32(vals[0]), uint32(vals[1]), uint8(vals[2]), nil
}
