package password_test

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"lastmile/internal/platform/auth/password"
)

func TestCheckRefuses(t *testing.T) {
	ada := []string{"ada.lovelace@example.com", "ada1815", "Ada Lovelace"}
	tests := []struct {
		name       string
		pw         string
		userInputs []string
		want       error
	}{
		{"empty", "", nil, password.ErrTooShort},
		{"password", "password", nil, password.ErrTooShort},
		{"digits", "12345678", nil, password.ErrTooShort},
		{"eleven characters", "elevenchars", nil, password.ErrTooShort},
		{"eleven multibyte characters", strings.Repeat("é", 11), nil, password.ErrTooShort},
		{"too long", strings.Repeat("x", password.MaxLength+1), nil, password.ErrTooLong},
		{"too long in characters", strings.Repeat("é", password.MaxLength+1), nil, password.ErrTooLong},
		{"invalid UTF-8", "correct horse\xffbattery", nil, password.ErrNotText},
		{"NUL", "correct horse\x00battery", nil, password.ErrNotText},
		{"leaked password", "password1234", nil, password.ErrTooCommon},
		{"leaked password, upper case", "QWERTY123456", nil, password.ErrTooCommon},
		{"leaked keyboard walk", "1q2w3e4r5t6y", nil, password.ErrTooCommon},
		{"two leaked passwords", "Password1234", nil, password.ErrTooGuessable},
		{"digit sequence", "123456789012", nil, password.ErrTooGuessable},
		{"leaked keyboard row", "qwertyuiopasdfgh", nil, password.ErrTooGuessable},
		{"l33t leaked password", "P@ssw0rd12345", nil, password.ErrTooGuessable},
		{"service name and year", "lastmile2026", nil, password.ErrTooGuessable},
		{"service name and digits", "LastMile123456", nil, password.ErrTooGuessable},
		{"word and year", "iloveyou2026!", nil, password.ErrTooGuessable},
		{"repeats", strings.Repeat("ab", 20), nil, password.ErrTooGuessable},
		{"the email", "ada.lovelace@example.com", ada, password.ErrTooGuessable},
		{"the email's local part and a year", "ada.lovelace1815", ada, password.ErrTooGuessable},
		{"the username twice", "ada1815ada1815", ada, password.ErrTooGuessable},
		{"the display name and digits", "AdaLovelace123", ada, password.ErrTooGuessable},
		{"guessable start of a long password", strings.Repeat("a", 40) + " then something much stronger xq7!", nil, password.ErrTooGuessable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := password.Check(tt.pw, tt.userInputs...); err != tt.want {
				t.Errorf("Check(%q, %q) = %v, want %v", tt.pw, tt.userInputs, err, tt.want)
			}
		})
	}
}

func TestCheckAccepts(t *testing.T) {
	ada := []string{"ada.lovelace@example.com", "ada1815", "Ada Lovelace"}
	for _, pw := range []string{
		"correct horse battery staple",
		"marmalade tugboat quietly sings",
		"ünïcödé pässwörd with ümläuts",
		"gX7#qP2!vL9@zR4$",
		strings.Repeat("é", password.MaxLength-1) + "x",
		"velvet kettle " + strings.Repeat("x", password.MaxLength-14),
	} {
		if err := password.Check(pw, ada...); err != nil {
			t.Errorf("Check(%q) = %v, want nil", pw, err)
		}
	}
}

// TestCheckAcceptsGeneratedPasswords checks the passwords identity generates for the bootstrap admin.
func TestCheckAcceptsGeneratedPasswords(t *testing.T) {
	for range 100 {
		pw := rand.Text()
		if err := password.Check(pw, "admin@lastmile.local", "Administrator"); err != nil {
			t.Fatalf("Check(%q) = %v, want nil", pw, err)
		}
	}
}

// TestLengthIsTheHashersLength proves that every length Check accepts the Hasher accepts too: both
// count characters, so a password of MaxLength two-byte characters is hashed, not refused.
func TestLengthIsTheHashersLength(t *testing.T) {
	h := newHasher(t, password.Config{Params: tiny})
	pw := strings.Repeat("é", password.MaxLength-1) + "x"
	if got := password.Length(pw); got != password.MaxLength {
		t.Fatalf("Length(%d × é + x) = %d, want %d", password.MaxLength-1, got, password.MaxLength)
	}
	if err := password.Check(pw); err != nil {
		t.Fatalf("Check() = %v, want nil", err)
	}
	if _, err := h.Hash(context.Background(), pw); err != nil {
		t.Errorf("Hash() of a password Check accepts: error = %v, want nil", err)
	}
}

func TestCheckMessages(t *testing.T) {
	for _, err := range []error{password.ErrTooShort, password.ErrTooLong, password.ErrNotText, password.ErrTooCommon, password.ErrTooGuessable} {
		if errors.Unwrap(err) != nil || err.Error() == "" {
			t.Errorf("%v: want a plain, non-empty error", err)
		}
	}
}
