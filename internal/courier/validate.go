package courier

import (
	"fmt"
	"unicode/utf8"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/freetext"
)

// violations collects field violations of a request.
type violations []apperr.FieldViolation

func (v *violations) add(field, desc string) {
	*v = append(*v, apperr.FieldViolation{Field: field, Description: desc})
}

// id returns the normalised id, recording a violation when it is not a UUID.
func (v *violations) id(field, id string) string {
	n, ok := normalizeID(id)
	if !ok {
		v.add(field, "must be a UUID")
	}
	return n
}

// generation checks a claim's or release's generation: 0 for none, or positive.
func (v *violations) generation(field string, gen int64) int64 {
	if gen < 0 {
		v.add(field, "must not be negative")
	}
	return gen
}

func (v *violations) displayName(field, name string) {
	if p := displayNameProblem(name); p != "" {
		v.add(field, p)
	}
}

func displayNameProblem(name string) string {
	switch {
	case freetext.Blank(name):
		// Spaces and invisible characters (U+200B) alone are no name: it would show as none.
		return "is required"
	case !utf8.ValidString(name):
		return "must be valid UTF-8"
	case utf8.RuneCountInString(name) > MaxDisplayNameLen:
		return fmt.Sprintf("must be at most %d characters", MaxDisplayNameLen)
	}
	return freetext.Problem(name, false)
}

func (v *violations) mode(field string, m Mode) {
	if !m.Valid() {
		v.add(field, "must be a defined transport mode")
	}
}

func (v *violations) capacity(field string, c int) {
	if c < 1 || c > MaxCapacity {
		v.add(field, fmt.Sprintf("must be between 1 and %d", MaxCapacity))
	}
}

func (v violations) err() error {
	if len(v) == 0 {
		return nil
	}
	return apperr.InvalidRequest(v...)
}
