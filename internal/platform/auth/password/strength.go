package password

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/trustelem/zxcvbn"
	"github.com/trustelem/zxcvbn/match"
)

// MinLength and MaxLength bound the length of a new password, as Length counts it. They are the
// identity.v1 contract's min_len and max_len (OWASP ASVS 2.1.1 and 2.1.2). The Hasher accepts shorter
// passwords, so that old ones still verify, but none longer.
const (
	MinLength = 12
	MaxLength = 128
)

// Reasons Check refuses a password. Their messages are safe to show to the caller: they say what is wrong
// with the password and never repeat it. Check returns them unwrapped.
var (
	ErrTooShort     = errors.New("must be at least 12 characters")
	ErrTooLong      = errors.New("must be at most 128 characters")
	ErrNotText      = errors.New("must be valid UTF-8 without NUL characters")
	ErrTooCommon    = errors.New("is too common: it is on the lists of leaked passwords that attackers try first")
	ErrTooGuessable = errors.New("is too easy to guess: avoid names, words with digits appended, dates, " +
		"keyboard patterns, repeats and your own email or name; a few unrelated words make a good password")
)

// minScore is the lowest zxcvbn score Check accepts: 3, at least 10^8 guesses, which zxcvbn calls safely
// unguessable online and a moderate protection against an offline attack on a slow hash such as ours.
const minScore = 3

// maxScoredRunes bounds how much of a password the estimator reads. Its cost grows faster than the
// length (about 5 ms for 40 characters, 160 ms for 128 on one core), and Check runs before any rate
// limit's hashing slot, so a longer password is judged by its first maxScoredRunes characters: a
// password whose first 40 characters are guessable is refused even if the rest is not.
const maxScoredRunes = 40

// contextWords are the words NIST SP 800-63B (section 5.1.1.2) asks verifiers to refuse as
// "context-specific": the service's own name.
var contextWords = []string{"lastmile", "last-mile", "last mile"}

// Length returns the length of pw as both Check and the Hasher measure it: the number of Unicode code
// points, which is also what the contract's min_len and max_len count (each invalid UTF-8 byte counts
// as one). Passwords are not normalised (NFC): they are hashed as the bytes received, and normalising
// now would lock out whoever set a non-normalised password before.
func Length(pw string) int { return utf8.RuneCountInString(pw) }

// Check reports whether pw is acceptable as a new password, following NIST SP 800-63B section 5.1.1.2:
// MinLength to MaxLength characters (Length), valid UTF-8 without NUL, and not common or guessable. It
// returns nil or exactly one of ErrTooShort, ErrTooLong, ErrNotText, ErrTooCommon and ErrTooGuessable.
//
// Guessability is estimated with zxcvbn (Wheeler, USENIX Security 2016; the Go port
// github.com/trustelem/zxcvbn, which ships the reference dictionaries: 30,000 leaked passwords, English
// words, names, surnames and film and television words, and recognises keyboard patterns, repeats,
// sequences, dates and l33t spellings). userInputs are words an attacker would try for this user — the
// email, username, display name; each is also split at punctuation and spaces, so that "ada.lovelace"
// counts when the email is "ada.lovelace@example.com". The service's name counts too.
func Check(pw string, userInputs ...string) error {
	switch n := Length(pw); {
	case n < MinLength:
		return ErrTooShort
	case n > MaxLength:
		return ErrTooLong
	case !utf8.ValidString(pw) || strings.IndexByte(pw, 0) >= 0:
		return ErrNotText
	}
	scored := pw
	if Length(pw) > maxScoredRunes {
		scored = string([]rune(pw)[:maxScoredRunes])
	}
	res := zxcvbn.PasswordStrength(scored, expandInputs(userInputs))
	switch {
	case isCommon(res.Sequence, pw):
		return ErrTooCommon
	case res.Score < minScore:
		return ErrTooGuessable
	}
	return nil
}

// isCommon reports whether the estimator explained the whole password as one entry of the leaked
// passwords list (in any case, l33t spelling or reversed).
func isCommon(seq []*match.Match, pw string) bool {
	if len(seq) != 1 {
		return false
	}
	m := seq[0]
	return m.Pattern == "dictionary" && m.DictionaryName == "passwords" && m.Token == pw
}

// expandInputs returns the lowercased user inputs, each with its words (runs of at least three letters
// or digits) and its words run together ("adalovelace" for "Ada Lovelace"), and the context words.
func expandInputs(inputs []string) []string {
	out := append([]string(nil), contextWords...)
	for _, in := range inputs {
		in = strings.ToLower(strings.TrimSpace(in))
		if in == "" {
			continue
		}
		out = append(out, in)
		if local, _, ok := strings.Cut(in, "@"); ok {
			out = append(out, local)
		}
		words := strings.FieldsFunc(in, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
		if len(words) > 1 {
			out = append(out, strings.Join(words, ""))
		}
		for _, w := range words {
			if w != in && len([]rune(w)) >= 3 {
				out = append(out, w)
			}
		}
	}
	return out
}
