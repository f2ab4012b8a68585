package dispatch

import (
	"testing"
	"time"
)

// FuzzListTasksPageToken feeds arbitrary page tokens to the decoder an outsider reaches through
// ListTasks: it must never panic, and whatever it accepts must name a UUID and a time and encode back
// to a token that decodes to the same cursor.
func FuzzListTasksPageToken(f *testing.F) {
	f.Add(encodePageToken(pageToken{CreateTime: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC), ID: "01a22da8-e695-75a2-bdc6-b983eb9b99cc", Filter: "abc"}))
	f.Add("")
	f.Add("eyJjIjoiIn0")
	f.Add("!!!")
	f.Fuzz(func(t *testing.T, s string) {
		tok, ok := decodePageToken(s)
		if !ok {
			return
		}
		if _, valid := normalizeID(tok.ID); !valid || tok.CreateTime.IsZero() {
			t.Fatalf("accepted %q as %+v", s, tok)
		}
		back, ok := decodePageToken(encodePageToken(tok))
		if !ok || back.ID != tok.ID || !back.CreateTime.Equal(tok.CreateTime) || back.Filter != tok.Filter {
			t.Fatalf("round trip of %+v gave %+v, %v", tok, back, ok)
		}
	})
}
