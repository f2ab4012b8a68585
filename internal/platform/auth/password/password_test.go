package password_test

import (
	"context"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth/password"
)

// tiny are parameters cheap enough to hash hundreds of times in a test.
var tiny = password.Params{Memory: 8, Iterations: 1, Parallelism: 1, SaltLength: 16, KeyLength: 32}

func newHasher(t *testing.T, cfg password.Config) *password.Hasher {
	t.Helper()
	h, err := password.New(cfg)
	if err != nil {
		t.Fatalf("New(%+v) error = %v", cfg, err)
	}
	return h
}

func TestHashFormatAtDefaultParams(t *testing.T) {
	h := newHasher(t, password.Config{})
	encoded, err := h.Hash(context.Background(), "correct horse battery staple")
	if err != nil {
		t.Fatalf("Hash() error = %v", err)
	}
	// 16 bytes of salt and 32 of key, in unpadded standard base64.
	want := regexp.MustCompile(`^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)
	if !want.MatchString(encoded) {
		t.Errorf("Hash() = %q, want to match %s", encoded, want)
	}
	ok, rehash, err := h.Verify(context.Background(), "correct horse battery staple", encoded)
	if !ok || rehash || err != nil {
		t.Errorf("Verify(right password) = %v, %v, %v; want true, false, nil", ok, rehash, err)
	}
}

// TestVerifyReferenceVector checks compatibility with the reference implementation (phc-winner-argon2,
// src/test.c): its PHC string for "password" verifies, and asks for a rehash because its parameters are
// not ours.
func TestVerifyReferenceVector(t *testing.T) {
	const reference = "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"
	h := newHasher(t, password.Config{})
	ok, rehash, err := h.Verify(context.Background(), "password", reference)
	if !ok || !rehash || err != nil {
		t.Errorf("Verify(reference) = %v, %v, %v; want true, true, nil", ok, rehash, err)
	}
	ok, rehash, err = h.Verify(context.Background(), "Password", reference)
	if ok || rehash || err != nil {
		t.Errorf("Verify(wrong password, reference) = %v, %v, %v; want false, false, nil", ok, rehash, err)
	}
}

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	h := newHasher(t, password.Config{Params: tiny})
	passwords := []string{"s3cret", "ünïcödé pässwörd", strings.Repeat("x", password.MaxLength),
		strings.Repeat("é", password.MaxLength), " leading space"}
	for _, pw := range passwords {
		encoded, err := h.Hash(ctx, pw)
		if err != nil {
			t.Fatalf("Hash(%q) error = %v", pw, err)
		}
		if !strings.HasPrefix(encoded, "$argon2id$v=19$m=8,t=1,p=1$") {
			t.Errorf("Hash(%q) = %q, want the tiny parameters", pw, encoded)
		}
		if ok, rehash, err := h.Verify(ctx, pw, encoded); !ok || rehash || err != nil {
			t.Errorf("Verify(%q) = %v, %v, %v; want true, false, nil", pw, ok, rehash, err)
		}
		r := []rune(pw)
		for _, wrong := range []string{"!" + string(r[1:]), strings.ToUpper(pw), string(r[:len(r)-1])} {
			if ok, rehash, err := h.Verify(ctx, wrong, encoded); ok || rehash || err != nil {
				t.Errorf("Verify(%q against %q's hash) = %v, %v, %v; want false, false, nil", wrong, pw, ok, rehash, err)
			}
		}
	}
	a, _ := h.Hash(ctx, "same")
	b, _ := h.Hash(ctx, "same")
	if a == b {
		t.Errorf("two hashes of one password are both %q, want different salts", a)
	}
}

func TestNeedsRehash(t *testing.T) {
	ctx := context.Background()
	old := newHasher(t, password.Config{Params: tiny})
	encoded, err := old.Hash(ctx, "s3cret")
	if err != nil {
		t.Fatalf("Hash() error = %v", err)
	}
	tests := []struct {
		name   string
		params password.Params
	}{
		{"more memory", password.Params{Memory: 16, Iterations: 1, Parallelism: 1, SaltLength: 16, KeyLength: 32}},
		{"more iterations", password.Params{Memory: 8, Iterations: 2, Parallelism: 1, SaltLength: 16, KeyLength: 32}},
		{"more lanes", password.Params{Memory: 16, Iterations: 1, Parallelism: 2, SaltLength: 16, KeyLength: 32}},
		{"longer salt", password.Params{Memory: 8, Iterations: 1, Parallelism: 1, SaltLength: 32, KeyLength: 32}},
		{"longer key", password.Params{Memory: 8, Iterations: 1, Parallelism: 1, SaltLength: 16, KeyLength: 64}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHasher(t, password.Config{Params: tt.params})
			if ok, rehash, err := h.Verify(ctx, "s3cret", encoded); !ok || !rehash || err != nil {
				t.Errorf("Verify(right password, old params) = %v, %v, %v; want true, true, nil", ok, rehash, err)
			}
			// A wrong password proves nothing, so there is nothing to rehash.
			if ok, rehash, err := h.Verify(ctx, "wrong", encoded); ok || rehash || err != nil {
				t.Errorf("Verify(wrong password, old params) = %v, %v, %v; want false, false, nil", ok, rehash, err)
			}
		})
	}
}

func TestVerifyRejectsMalformedHashes(t *testing.T) {
	const salt, key = "c29tZXNhbHRzb21lc2FsdA", "CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"
	tests := []struct{ name, encoded string }{
		{"empty", ""},
		{"not PHC", "5f4dcc3b5aa765d61d8327deb882cf99"},
		{"bcrypt", "$2y$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"},
		{"argon2i", "$argon2i$v=19$m=8,t=1,p=1$" + salt + "$" + key},
		{"argon2d", "$argon2d$v=19$m=8,t=1,p=1$" + salt + "$" + key},
		{"old version", "$argon2id$v=16$m=8,t=1,p=1$" + salt + "$" + key},
		{"no version", "$argon2id$m=8,t=1,p=1$" + salt + "$" + key},
		{"extra field", "$argon2id$v=19$m=8,t=1,p=1$" + salt + "$" + key + "$x"},
		{"missing key", "$argon2id$v=19$m=8,t=1,p=1$" + salt},
		{"text before", "x$argon2id$v=19$m=8,t=1,p=1$" + salt + "$" + key},
		{"params out of order", "$argon2id$v=19$t=1,m=8,p=1$" + salt + "$" + key},
		{"params missing p", "$argon2id$v=19$m=8,t=1$" + salt + "$" + key},
		{"params extra", "$argon2id$v=19$m=8,t=1,p=1,keyid=a$" + salt + "$" + key},
		{"params not canonical", "$argon2id$v=19$m=08,t=1,p=1$" + salt + "$" + key},
		{"params signed", "$argon2id$v=19$m=+8,t=1,p=1$" + salt + "$" + key},
		{"params negative", "$argon2id$v=19$m=8,t=-1,p=1$" + salt + "$" + key},
		{"memory over 1 GiB", "$argon2id$v=19$m=1048577,t=1,p=1$" + salt + "$" + key},
		{"memory over 32 bits", "$argon2id$v=19$m=4294967296,t=1,p=1$" + salt + "$" + key},
		{"memory below 8 per lane", "$argon2id$v=19$m=15,t=1,p=2$" + salt + "$" + key},
		{"zero iterations", "$argon2id$v=19$m=8,t=0,p=1$" + salt + "$" + key},
		{"too many iterations", "$argon2id$v=19$m=8,t=33,p=1$" + salt + "$" + key},
		{"zero lanes", "$argon2id$v=19$m=8,t=1,p=0$" + salt + "$" + key},
		{"too many lanes", "$argon2id$v=19$m=4096,t=1,p=17$" + salt + "$" + key},
		{"lanes over 8 bits", "$argon2id$v=19$m=4096,t=1,p=257$" + salt + "$" + key},
		{"salt not base64", "$argon2id$v=19$m=8,t=1,p=1$c29t*XNhbHQ$" + key},
		{"salt padded", "$argon2id$v=19$m=8,t=1,p=1$c29tZXNhbHQ=$" + key},
		{"salt too short", "$argon2id$v=19$m=8,t=1,p=1$c29tZXNh$" + key},
		{"key url-safe base64", "$argon2id$v=19$m=8,t=1,p=1$" + salt + "$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRP_c"},
		{"key not canonical", "$argon2id$v=19$m=8,t=1,p=1$" + salt + "$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPd"},
		{"key too short", "$argon2id$v=19$m=8,t=1,p=1$" + salt + "$CTFhFdXPJO1aFaMaO6Mm5c"},
		{"oversized", "$argon2id$v=19$m=8,t=1,p=1$" + salt + "$" + strings.Repeat("A", 600)},
	}
	h := newHasher(t, password.Config{Params: tiny})
	var derived atomic.Int32
	password.SetDerive(h, func([]byte, []byte, password.Params) []byte { derived.Add(1); return make([]byte, 32) })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, rehash, err := h.Verify(context.Background(), "password", tt.encoded)
			if ok || rehash || apperr.CodeOf(err) != apperr.Internal {
				t.Errorf("Verify(%q) = %v, %v, %v; want false, false, code %q", tt.encoded, ok, rehash, err, apperr.Internal)
			}
		})
	}
	if n := derived.Load(); n != 0 {
		t.Errorf("malformed hashes ran the key derivation %d times, want 0", n)
	}
}

func TestRejectsPasswords(t *testing.T) {
	ctx := context.Background()
	h := newHasher(t, password.Config{Params: tiny})
	encoded, err := h.Hash(ctx, "s3cret")
	if err != nil {
		t.Fatalf("Hash() error = %v", err)
	}
	tests := []struct{ name, password string }{
		{"empty", ""},
		{"too long", strings.Repeat("x", password.MaxLength+1)},
		{"too long in characters", strings.Repeat("é", password.MaxLength+1)},
		{"NUL inside", "s3cret\x00suffix"},
		{"NUL at end", "s3cret\x00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := h.Hash(ctx, tt.password); apperr.CodeOf(err) != apperr.Invalid {
				t.Errorf("Hash() error = %v, want code %q", err, apperr.Invalid)
			}
			if ok, _, err := h.Verify(ctx, tt.password, encoded); ok || apperr.CodeOf(err) != apperr.Invalid {
				t.Errorf("Verify() = %v, %v; want false, code %q", ok, err, apperr.Invalid)
			}
			if err := h.DummyVerify(ctx, tt.password); apperr.CodeOf(err) != apperr.Invalid {
				t.Errorf("DummyVerify() error = %v, want code %q", err, apperr.Invalid)
			}
		})
	}
}

func TestDummyVerifyCostsOneVerify(t *testing.T) {
	h := newHasher(t, password.Config{Params: tiny})
	var got []password.Params
	password.SetDerive(h, func(_, _ []byte, p password.Params) []byte {
		got = append(got, p)
		return make([]byte, p.KeyLength)
	})
	if err := h.DummyVerify(context.Background(), "guess"); err != nil {
		t.Fatalf("DummyVerify() error = %v", err)
	}
	if len(got) != 1 || got[0] != tiny {
		t.Errorf("DummyVerify derived keys with %+v, want exactly once with %+v", got, tiny)
	}
}

func TestNewRejectsParams(t *testing.T) {
	tests := []struct {
		name string
		cfg  password.Config
	}{
		{"memory over 1 GiB", password.Config{Params: password.Params{Memory: 1<<20 + 1, Iterations: 1, Parallelism: 1, SaltLength: 16, KeyLength: 32}}},
		{"zero iterations", password.Config{Params: password.Params{Memory: 8, Parallelism: 1, SaltLength: 16, KeyLength: 32}}},
		{"zero lanes", password.Config{Params: password.Params{Memory: 8, Iterations: 1, SaltLength: 16, KeyLength: 32}}},
		{"short salt", password.Config{Params: password.Params{Memory: 8, Iterations: 1, Parallelism: 1, SaltLength: 4, KeyLength: 32}}},
		{"short key", password.Config{Params: password.Params{Memory: 8, Iterations: 1, Parallelism: 1, SaltLength: 16, KeyLength: 8}}},
		{"negative concurrency", password.Config{Params: tiny, MaxConcurrent: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := password.New(tt.cfg); err == nil {
				t.Errorf("New(%+v) error = nil, want an error", tt.cfg)
			}
		})
	}
}

// gate is a key derivation that blocks until released and records how many run at once.
type gate struct {
	mu            sync.Mutex
	running, peak int
	release       chan struct{}
}

func newGate() *gate { return &gate{release: make(chan struct{})} }

func (g *gate) derive(_, _ []byte, p password.Params) []byte {
	g.mu.Lock()
	g.running++
	g.peak = max(g.peak, g.running)
	g.mu.Unlock()
	<-g.release
	g.mu.Lock()
	g.running--
	g.mu.Unlock()
	return make([]byte, p.KeyLength)
}

func (g *gate) state() (running, peak int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.running, g.peak
}

func TestConcurrencyBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const limit, callers = 2, 7
		h := newHasher(t, password.Config{Params: tiny, MaxConcurrent: limit})
		g := newGate()
		password.SetDerive(h, g.derive)

		var wg sync.WaitGroup
		errs := make(chan error, callers)
		for range callers {
			wg.Go(func() {
				_, err := h.Hash(context.Background(), "s3cret")
				errs <- err
			})
		}
		for done := 0; done < callers; done++ {
			synctest.Wait() // every caller is either hashing or waiting for a slot
			running, _ := g.state()
			if want := min(limit, callers-done); running != want {
				t.Fatalf("after %d hashes finished, %d run at once, want %d", done, running, want)
			}
			g.release <- struct{}{}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("Hash() error = %v", err)
			}
		}
		if _, peak := g.state(); peak != limit {
			t.Errorf("peak concurrency = %d, want %d", peak, limit)
		}
	})
}

func TestWaitRespectsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHasher(t, password.Config{Params: tiny, MaxConcurrent: 1})
		g := newGate()
		password.SetDerive(h, g.derive)
		encoded := "$argon2id$v=19$m=8,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"

		holder := make(chan error, 1)
		go func() {
			_, err := h.Hash(context.Background(), "first")
			holder <- err
		}()
		synctest.Wait() // the first caller holds the only slot

		calls := []struct {
			name string
			call func(ctx context.Context) error
		}{
			{"Hash", func(ctx context.Context) error { _, err := h.Hash(ctx, "s3cret"); return err }},
			{"Verify", func(ctx context.Context) error { _, _, err := h.Verify(ctx, "s3cret", encoded); return err }},
			{"DummyVerify", func(ctx context.Context) error { return h.DummyVerify(ctx, "s3cret") }},
		}
		for _, c := range calls {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			err := c.call(ctx)
			cancel()
			e := apperr.As(err)
			if e == nil || e.Code != apperr.ResourceExhausted || e.RetryAfter <= 0 {
				t.Errorf("%s while all slots are taken = %v, want code %q with RetryAfter", c.name, err, apperr.ResourceExhausted)
			}
		}

		g.release <- struct{}{}
		if err := <-holder; err != nil {
			t.Fatalf("Hash(first) error = %v", err)
		}
		// A free slot is not taken by a caller whose context has already ended.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := h.Hash(ctx, "s3cret"); apperr.CodeOf(err) != apperr.ResourceExhausted {
			t.Errorf("Hash(cancelled ctx) error = %v, want code %q", err, apperr.ResourceExhausted)
		}
		if _, peak := g.state(); peak != 1 {
			t.Errorf("peak concurrency = %d, want 1", peak)
		}
	})
}

func BenchmarkHash(b *testing.B) {
	h, err := password.New(password.Config{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.Hash(ctx, "correct horse battery staple"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyPassword(b *testing.B) {
	h, err := password.New(password.Config{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	encoded, err := h.Hash(ctx, "correct horse battery staple")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if ok, _, err := h.Verify(ctx, "correct horse battery staple", encoded); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}
