package sqlstore

import (
	"encoding/json"
	"testing"
)

// TestHasNULEscape checks the escape is found where encoding/json writes a NUL, and only there (an
// escaped backslash followed by u0000 is text).
func TestHasNULEscape(t *testing.T) {
	for _, c := range []struct {
		s    string
		want bool
	}{
		{"", false},
		{"plain", false},
		{"a\x00b", true},
		{"\x00", true},
		{`\u0000`, false},  // a backslash, then u0000: encoded as \\u0000
		{"\\\x00", true},   // a backslash, then a NUL: \\\u0000
		{`\\u0000`, false}, // two backslashes, then u0000
		{`\u0000` + "\x00", true},
	} {
		doc, err := json.Marshal(map[string]string{"k": c.s})
		if err != nil {
			t.Fatal(err)
		}
		if got := hasNULEscape(string(doc)); got != c.want {
			t.Errorf("hasNULEscape(%s) = %v, want %v", doc, got, c.want)
		}
	}
}
