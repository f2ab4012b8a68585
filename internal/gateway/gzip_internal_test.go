package gateway

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestGzipSkipsEventStreams: an event stream is never compressed, and each Flush reaches the connection at
// once with what was written so far.
func TestGzipSkipsEventStreams(t *testing.T) {
	rec := httptest.NewRecorder()
	w := &gzipWriter{ResponseWriter: rec, accepts: true}
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	event := "id: 1\ndata: " + strings.Repeat("x", 2*minGzipBytes) + "\n\n"
	if _, err := io.WriteString(w, event); err != nil {
		t.Fatal(err)
	}
	if err := http.NewResponseController(w).Flush(); err != nil {
		t.Fatalf("Flush through the gzip writer: %v", err)
	}
	if !rec.Flushed {
		t.Errorf("Flush did not reach the connection")
	}
	if got := rec.Body.String(); got != event {
		t.Errorf("body after the first flush = %.40q…, want the event as written", got)
	}
	w.finish()
	if got := rec.Header().Get("Content-Encoding"); got != "" {
		t.Errorf("Content-Encoding = %q, want none for text/event-stream", got)
	}
}

// TestGzipFlushStreams: a compressed response flushes what the compressor holds, so a streamed response
// keeps streaming, and the whole body decompresses to what was written.
func TestGzipFlushStreams(t *testing.T) {
	rec := httptest.NewRecorder()
	w := &gzipWriter{ResponseWriter: rec, accepts: true}
	w.Header().Set("Content-Type", "application/json")
	first := `{"chunk":"` + strings.Repeat("a", 2*minGzipBytes) + `"}`
	if _, err := io.WriteString(w, first); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	if got, want := rec.Header().Get("Content-Encoding"), "gzip"; got != want {
		t.Fatalf("Content-Encoding = %q, want %q", got, want)
	}
	zr, err := gzip.NewReader(bytes.NewReader(rec.Body.Bytes()))
	if err != nil {
		t.Fatalf("gzip.NewReader after the first flush: %v", err)
	}
	got := make([]byte, len(first))
	if _, err := io.ReadFull(zr, got); err != nil || string(got) != first {
		t.Errorf("after the first flush read %q (%v), want the first chunk", got, err)
	}
	if _, err := io.WriteString(w, "\n{}"); err != nil {
		t.Fatal(err)
	}
	w.finish()
	all, err := gzip.NewReader(bytes.NewReader(rec.Body.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(all)
	if err != nil || string(body) != first+"\n{}" {
		t.Errorf("whole body = %.40q… (%v), want both chunks", body, err)
	}
}

// TestGzipSmallAndEmptyResponses: small bodies go out as they are, with their Content-Length, and a
// response without a body keeps its status.
func TestGzipSmallAndEmptyResponses(t *testing.T) {
	rec := httptest.NewRecorder()
	w := &gzipWriter{ResponseWriter: rec, accepts: true}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", "2")
	_, _ = io.WriteString(w, "{}")
	w.finish()
	if rec.Header().Get("Content-Encoding") != "" || rec.Header().Get("Content-Length") != "2" || rec.Body.String() != "{}" {
		t.Errorf("small response: encoding %q, length %q, body %q; want none, 2, {}",
			rec.Header().Get("Content-Encoding"), rec.Header().Get("Content-Length"), rec.Body.String())
	}

	rec = httptest.NewRecorder()
	w = &gzipWriter{ResponseWriter: rec, accepts: true}
	w.WriteHeader(http.StatusNoContent)
	w.finish()
	if rec.Code != http.StatusNoContent || rec.Body.Len() != 0 {
		t.Errorf("204: status %d, body %q; want 204 and none", rec.Code, rec.Body.String())
	}
}

func TestAcceptsGzip(t *testing.T) {
	for header, want := range map[string]bool{
		"":                     false,
		"gzip":                 true,
		"GZIP":                 true,
		"br, gzip;q=0.5":       true,
		"gzip;q=0":             false,
		"*":                    true,
		"*;q=0":                false,
		"identity":             false,
		"*, gzip;q=0":          false,
		"deflate, gzip ; q=1 ": true,
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		if header != "" {
			r.Header.Set("Accept-Encoding", header)
		}
		if got := acceptsGzip(r); got != want {
			t.Errorf("acceptsGzip(%q) = %v, want %v", header, got, want)
		}
	}
}

// TestGzipKeepsRangesAndWeakensETags: a partial response keeps its identity bytes, and a compressed one's
// strong ETag becomes weak.
func TestGzipKeepsRangesAndWeakensETags(t *testing.T) {
	big := strings.Repeat("a", 4*minGzipBytes)

	rec := httptest.NewRecorder()
	w := &gzipWriter{ResponseWriter: rec, accepts: true}
	w.Header().Set("Content-Type", "text/javascript")
	w.Header().Set("Content-Range", "bytes 0-4095/9000")
	w.WriteHeader(http.StatusPartialContent)
	_, _ = io.WriteString(w, big)
	w.finish()
	if rec.Header().Get("Content-Encoding") != "" || rec.Body.String() != big {
		t.Errorf("206: Content-Encoding %q, %d body bytes; want none and the range as written", rec.Header().Get("Content-Encoding"), rec.Body.Len())
	}

	rec = httptest.NewRecorder()
	w = &gzipWriter{ResponseWriter: rec, accepts: true}
	w.Header().Set("Content-Type", "text/javascript")
	w.Header().Set("ETag", `"abc"`)
	_, _ = io.WriteString(w, big)
	w.finish()
	if got, want := rec.Header().Get("ETag"), `W/"abc"`; got != want || rec.Header().Get("Content-Encoding") != "gzip" {
		t.Errorf("compressed: ETag %q, Content-Encoding %q; want %q, gzip", got, rec.Header().Get("Content-Encoding"), want)
	}
}
