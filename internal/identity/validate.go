package identity

import (
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth/password"
	"lastmile/internal/platform/freetext"
)

// Field limits, the same as the identity.v1 contract's validation rules. The domain checks them itself
// because it is called from more places than the gRPC adapter (bootstrap, bulk items).
const (
	MaxEmailLen       = 254
	MinPasswordLen    = password.MinLength
	MaxPasswordLen    = password.MaxLength
	MaxDisplayNameLen = 100
	MaxSearchLen      = 100
)

var (
	// emailPattern is the WHATWG "valid e-mail address", which protovalidate's email rule also uses.
	emailPattern    = regexp.MustCompile("^[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$")
	usernamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{2,31}$`)
	uuidPattern     = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
)

// NormalizeEmail returns the form in which emails are stored and compared: trimmed and lowercased.
// Lowercasing the local part is technically lossy, but no mail system in use treats case as significant,
// and one spelling per address is what makes the uniqueness rule obvious to users.
func NormalizeEmail(email string) string { return FoldKey(strings.TrimSpace(email)) }

// FoldKey returns the form under which emails and usernames identify an account and names are searched:
// spellings that differ only in case are the same account. Stores keep and look up the keys in this form
// (email_key, username_key, display_name_key), so this is the one place that decides it.
func FoldKey(s string) string { return strings.ToLower(s) }

// violations collects field violations of one request.
type violations []apperr.FieldViolation

func (v *violations) add(field, description string) {
	*v = append(*v, apperr.FieldViolation{Field: field, Description: description})
}

// err returns an Invalid error listing the violations, or nil when there are none.
func (v violations) err() error {
	if len(v) == 0 {
		return nil
	}
	return apperr.InvalidRequest(v...)
}

// email checks a normalised email address.
func (v *violations) email(field, email string) {
	switch {
	case email == "":
		v.add(field, "is required")
	case len(email) > MaxEmailLen:
		v.add(field, "must be at most 254 characters")
	case !emailPattern.MatchString(email):
		v.add(field, "must be a valid email address")
	}
}

// password checks a new password with the platform's policy (length as the hasher counts it, not common,
// not guessable from userInputs: the user's email, username and display name).
func (v *violations) password(field, pw string, userInputs ...string) {
	if err := password.Check(pw, userInputs...); err != nil {
		v.add(field, err.Error())
	}
}

func (v *violations) displayName(field, name string) {
	switch n := utf8.RuneCountInString(name); {
	case freetext.Blank(name):
		// Spaces and invisible characters (U+200B) alone are no name: it would show as none.
		v.add(field, "is required")
	case n > MaxDisplayNameLen:
		v.add(field, "must be at most 100 characters")
	default:
		if p := freetext.Problem(name, false); p != "" {
			v.add(field, p)
		}
	}
}

// username checks an optional username: empty is valid.
func (v *violations) username(field, name string) {
	if name != "" && !usernamePattern.MatchString(name) {
		v.add(field, "must be 3 to 32 letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
}

func (v *violations) id(field, id string) {
	if !uuidPattern.MatchString(id) {
		v.add(field, "must be a UUID")
	}
}

func (v *violations) role(field string, r Role) {
	if r != "" && !r.Valid() {
		v.add(field, "must be a defined role")
	}
}

func (v *violations) filter(f Filter) {
	switch f.Status {
	case "", StatusActive, StatusSuspended, StatusDeleted:
	default:
		v.add("status", "must be a defined status")
	}
	v.role("role", f.Role)
	switch {
	case utf8.RuneCountInString(f.Search) > MaxSearchLen:
		v.add("search", "must be at most 100 characters")
	case hasControl(f.Search):
		v.add("search", "must not contain control characters")
	}
}

func hasControl(s string) bool { return strings.IndexFunc(s, unicode.IsControl) >= 0 }

// normalizeID lowercases a UUID so that ids compare as the store keeps them.
func normalizeID(id string) string { return strings.ToLower(id) }
