package freetext_test

import (
	"testing"

	"lastmile/internal/platform/freetext"
)

func TestProblem(t *testing.T) {
	for _, tc := range []struct {
		s     string
		lines bool
		want  string
	}{
		{"Oranienstraße 2", false, ""},
		{"", false, ""},
		{"شارع \u200fالملك\u200e 12", false, ""},     // RLM and LRM: direction marks, allowed
		{"\u061cעברית\u200f", false, ""},             // ALM too
		{"ring twice\nthen knock\tloudly", true, ""}, // line breaks and tabs in multi-line text
		{"ring twice\nthen knock", false, freetext.Control},
		{"ring\x00twice", true, freetext.NUL},
		{"ring\x00twice", false, freetext.Control},
		{"Main St \u202e1 tsoP", false, freetext.Bidi},
		{"\u202aa", true, freetext.Bidi},
		{"\u202ba", true, freetext.Bidi},
		{"\u202ca", true, freetext.Bidi},
		{"\u202da", true, freetext.Bidi},
		{"a\u2066b\u2069", true, freetext.Bidi},
		{"a\u2067b", false, freetext.Bidi},
		{"a\u2068b", false, freetext.Bidi},
		{"a\u2029b\u2065\u206a", false, ""}, // the neighbours of the ranges are not bidi controls
		{"a\u2029b\u2065\u206a\u2029", true, ""},
	} {
		if got := freetext.Problem(tc.s, tc.lines); got != tc.want {
			t.Errorf("Problem(%+q, lines=%v) = %q, want %q", tc.s, tc.lines, got, tc.want)
		}
	}
}

func TestIsBidiControl(t *testing.T) {
	var got []rune
	for r := rune(0); r <= 0x10FFFF; r++ {
		if freetext.IsBidiControl(r) {
			got = append(got, r)
		}
	}
	want := []rune{0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069}
	if string(got) != string(want) {
		t.Errorf("IsBidiControl holds for %U, want %U", got, want)
	}
}

func TestBlank(t *testing.T) {
	for s, want := range map[string]bool{
		"": true, "   ": true, " \t\n\u00a0\u3000": true, "\u200b": true, "\ufeff \u200d\u200e": true, "\u00ad": true,
		"a": false, "  Main St 1 ": false, "\u200bx": false, "شارع": false, "\u061c12": false,
	} {
		if got := freetext.Blank(s); got != want {
			t.Errorf("Blank(%+q) = %v, want %v", s, got, want)
		}
	}
}
