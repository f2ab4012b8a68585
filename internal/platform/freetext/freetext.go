// Package freetext holds the rule every service applies to the characters of the free text people type
// and other people read: names, addresses, notes, instructions, comments.
package freetext

import (
	"strings"
	"unicode"
)

// The descriptions Problem returns: predicates, so that a field violation reads "<field> must not …".
const (
	Control = "must not contain control characters"
	NUL     = "must not contain NUL characters"
	Bidi    = "must not contain bidirectional control characters (U+202A to U+202E, U+2066 to U+2069)"
)

// IsBidiControl reports whether r is a bidirectional embedding, override or isolate control: U+202A to
// U+202E (LRE, RLE, PDF, LRO, RLO) and U+2066 to U+2069 (LRI, RLI, FSI, PDI). They make text display in
// another order than it is written, so one party could show another an address or a name that reads
// differently from what it is ("Trojan Source"). The marks U+200E and U+200F (LRM, RLM) and U+061C (ALM)
// only set the direction of neutral characters next to them, as Arabic and Hebrew text needs, and are
// not controls in this sense.
func IsBidiControl(r rune) bool {
	return r >= '\u202A' && r <= '\u202E' || r >= '\u2066' && r <= '\u2069'
}

// Problem returns what is wrong with the characters of s, one of Control, NUL and Bidi, or "" when
// nothing is. NUL and the bidirectional controls are refused in every text (PostgreSQL cannot store NUL,
// and a request must not be taken on SQLite that the same deployment on PostgreSQL would refuse); the
// other control characters (tab, line breaks and the rest of Unicode's Cc) only when lines is false, as
// for one-line texts such as names and addresses. It checks neither length nor UTF-8 validity.
func Problem(s string, lines bool) string {
	switch {
	case !lines && strings.IndexFunc(s, unicode.IsControl) >= 0:
		return Control
	case strings.IndexByte(s, 0) >= 0:
		return NUL
	case strings.IndexFunc(s, IsBidiControl) >= 0:
		return Bidi
	}
	return ""
}

// Blank reports whether s shows nothing: it is empty or holds only white space (unicode.IsSpace: blanks,
// tabs, line breaks, no-break and ideographic spaces) and invisible format characters (Unicode's Cf: the
// zero-width space U+200B, joiners, direction marks, the byte order mark U+FEFF, the soft hyphen). A
// required text that is Blank is missing: an address of spaces tells a courier nothing.
func Blank(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return !unicode.IsSpace(r) && !unicode.Is(unicode.Cf, r) }) < 0
}
