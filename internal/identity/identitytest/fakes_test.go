package identitytest_test

import (
	"context"
	"testing"

	"lastmile/internal/identity/identitytest"
)

func TestHasher(t *testing.T) {
	ctx := context.Background()
	var h identitytest.Hasher
	old, err := h.Hash(ctx, "correct horse")
	if err != nil {
		t.Fatalf("Hash() = %v", err)
	}
	tests := []struct {
		name       string
		upgrade    bool
		password   string
		wantOK     bool
		wantRehash bool
	}{
		{"right password", false, "correct horse", true, false},
		{"wrong password", false, "battery staple", false, false},
		{"right password after upgrade", true, "correct horse", true, true},
		{"wrong password after upgrade", false, "battery staple", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.upgrade {
				h.Upgrade()
			}
			ok, rehash, err := h.Verify(ctx, tt.password, old)
			if err != nil || ok != tt.wantOK || rehash != tt.wantRehash {
				t.Errorf("Verify(%q) = %v, %v, %v; want %v, %v, nil", tt.password, ok, rehash, err, tt.wantOK, tt.wantRehash)
			}
		})
	}
	if _, _, err := h.Verify(ctx, "x", "$argon2id$v=19$m=19456"); err == nil {
		t.Error("Verify(malformed hash) = nil error, want an error")
	}
	h.DummyVerify(ctx, "x")
	if got := h.DummyVerifies(); got != 1 {
		t.Errorf("DummyVerifies() = %d, want 1", got)
	}
}
