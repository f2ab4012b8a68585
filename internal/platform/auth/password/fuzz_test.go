package password_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"lastmile/internal/platform/auth/password"
)

// FuzzCheck feeds arbitrary passwords and user inputs to Check, which anyone reaches by signing up. It
// must never panic, must answer nil or exactly one of its errors, must decide length as Length counts
// it, and must stay fast whatever the password: the estimator reads at most its first 40 characters.
func FuzzCheck(f *testing.F) {
	for _, seed := range []struct{ pw, input string }{
		{"correct horse battery staple", "ada@example.com"},
		{"password1234", ""},
		{"lastmile2026", ""},
		{"ada.lovelace1815", "ada.lovelace@example.com"},
		{strings.Repeat("é", password.MaxLength), ""},
		{strings.Repeat("1", password.MaxLength+1), ""},
		{"19/12/1990 24-02-2020", ""},
		{"qwertyuiop[]asdfghjkl;'zxcvbnm,./", "q"},
		{"p4$$w0rd@1!p4$$w0rd@1!p4$$w0rd@1!p4$$w0rd@1!", "@"},
		{"\xff\xfe correct horse battery", "\xff"},
		{"abc\x00defghijklmnop", "\x00"},
	} {
		f.Add(seed.pw, seed.input)
	}
	known := []error{password.ErrTooShort, password.ErrTooLong, password.ErrNotText, password.ErrTooCommon, password.ErrTooGuessable}
	f.Fuzz(func(t *testing.T, pw, input string) {
		err := password.Check(pw, input)
		n := password.Length(pw)
		switch {
		case n < password.MinLength:
			if err != password.ErrTooShort {
				t.Fatalf("Check(%q of length %d) = %v, want %v", pw, n, err, password.ErrTooShort)
			}
		case n > password.MaxLength:
			if err != password.ErrTooLong {
				t.Fatalf("Check(%q of length %d) = %v, want %v", pw, n, err, password.ErrTooLong)
			}
		case !utf8.ValidString(pw) || strings.ContainsRune(pw, 0):
			if err != password.ErrNotText {
				t.Fatalf("Check(%q) = %v, want %v", pw, err, password.ErrNotText)
			}
		case err != nil:
			for _, k := range known {
				if err == k {
					return
				}
			}
			t.Fatalf("Check(%q) = %v (%T), want nil or one of its errors; wrapped: %v", pw, err, err, errors.Unwrap(err))
		}
	})
}
