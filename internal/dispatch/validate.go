package dispatch

import (
	"fmt"
	"regexp"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/freetext"
)

// violations collects field violations of a request. The gRPC boundary validates the contract's rules
// first; the domain checks them again (and the rules that need the clock), so that no caller that skips
// the boundary (the simulator, tests, later adapters) can store what the contract forbids.
type violations []apperr.FieldViolation

func (v *violations) add(field, desc string) {
	*v = append(*v, apperr.FieldViolation{Field: field, Description: desc})
}

// id returns the canonical lowercase form of a UUID, recording a violation when id is not one.
func (v *violations) id(field, id string) string {
	n, ok := normalizeID(id)
	if !ok {
		v.add(field, "must be a UUID")
	}
	return n
}

// optionalID is id for fields that may be empty.
func (v *violations) optionalID(field, id string) string {
	if id == "" {
		return ""
	}
	return v.id(field, id)
}

func normalizeID(id string) (string, bool) {
	if len(id) != 36 {
		return "", false
	}
	u, err := uuid.Parse(id)
	if err != nil {
		return "", false
	}
	return u.String(), true
}

var printableASCII = regexp.MustCompile(`^[!-~]+$`)

// text checks a free-text field: valid UTF-8, at most max characters, and the characters every service
// refuses in free text (freetext.Problem: NUL, the bidirectional controls, and when noControl every
// control character).
func (v *violations) text(field, s string, maxLen int, required, noControl bool) {
	switch {
	case required && freetext.Blank(s):
		// Spaces and invisible characters alone are no text: an address of blanks tells a courier nothing.
		v.add(field, "is required")
	case !utf8.ValidString(s):
		v.add(field, "must be valid UTF-8")
	case utf8.RuneCountInString(s) > maxLen:
		v.add(field, fmt.Sprintf("must be at most %d characters", maxLen))
	default:
		if p := freetext.Problem(s, !noControl); p != "" {
			v.add(field, p)
		}
	}
}

// API time range: every timestamp a request carries lies in [2000-01-01, 2100-01-01).
var (
	minTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
)

func (v *violations) timeInRange(field string, t time.Time) {
	if t.Before(minTime) || !t.Before(maxTime) {
		v.add(field, "must be between 2000-01-01 and 2100-01-01")
	}
}

func (v violations) err() error {
	if len(v) == 0 {
		return nil
	}
	return apperr.InvalidRequest(v...)
}
