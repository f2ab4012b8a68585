package identity_test

import (
	"fmt"
	"testing"

	"lastmile/internal/identity"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/apperrtest"
)

// TestLoginRefusesImpossibleUsernames checks that a login by a username no account can have (issue 8's
// property test sent "a\x00b", which PostgreSQL refused as text, answering Internal) is the caller's
// error, found before the store is asked or a password hashed.
func TestLoginRefusesImpossibleUsernames(t *testing.T) {
	f := newFixture(t)
	for _, name := range []string{"a\x00b", "ab", "-abc", "a b c", "名前名前", "abc\n"} {
		before := f.hasher.DummyVerifies()
		_, err := f.svc.Login(anonymous(t), identity.Credentials{Username: name, Password: password})
		apperrtest.WantCode(t, fmt.Sprintf("Login(username %q)", name), err, apperr.Invalid)
		if got := f.hasher.DummyVerifies() - before; got != 0 {
			t.Errorf("Login(username %q): DummyVerify calls = %d, want 0", name, got)
		}
	}
}
