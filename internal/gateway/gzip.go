package gateway

import (
	"compress/gzip"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// minGzipBytes is the smallest response body worth compressing: below about a kilobyte the gzip header and
// the CPU cost outweigh the bytes saved.
const minGzipBytes = 1024

var gzipWriters = sync.Pool{New: func() any {
	zw, _ := gzip.NewWriterLevel(nil, gzip.DefaultCompression) // cannot fail for a valid level
	return zw
}}

// acceptsGzip reports whether the request's Accept-Encoding admits gzip (RFC 9110, section 12.5.3): listed
// with a q-value above zero, or admitted by "*" without excluding it.
func acceptsGzip(r *http.Request) bool {
	star := false
	for _, v := range r.Header.Values("Accept-Encoding") {
		for part := range strings.SplitSeq(v, ",") {
			coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			coding = strings.ToLower(strings.TrimSpace(coding))
			if coding != "gzip" && coding != "*" {
				continue
			}
			ok := true
			if q, found := strings.CutPrefix(strings.TrimSpace(params), "q="); found {
				f, err := strconv.ParseFloat(strings.TrimSpace(q), 64)
				ok = err == nil && f > 0
			}
			if coding == "gzip" {
				return ok
			}
			star = ok
		}
	}
	return star
}

// compressible reports whether a response of this Content-Type shrinks under gzip: JSON, text, JavaScript,
// SVG. Event streams (text/event-stream) are excluded: each event must reach the browser when it is
// flushed, not when a compressor's window fills. Images and other binary bodies are compressed already.
func compressible(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	switch {
	case mt == "text/event-stream":
		return false
	case strings.HasPrefix(mt, "text/"), mt == "application/json", strings.HasSuffix(mt, "+json"),
		mt == "application/javascript", mt == "image/svg+xml":
		return true
	}
	return false
}

// gzipWriter compresses a response when the client accepts gzip, its type is compressible and its body is
// at least minGzipBytes. The decision waits for the first write (or flush, or the end of the response),
// since grpc-gateway writes a unary response's whole body at once and sets no Content-Length. Flush passes
// through, so streamed responses keep streaming.
type gzipWriter struct {
	http.ResponseWriter
	accepts bool
	status  int // the status the handler asked for, sent once the encoding is decided
	decided bool
	zw      *gzip.Writer
}

// WriteHeader records the status; it is sent with the encoding's headers on the first write or flush.
func (w *gzipWriter) WriteHeader(code int) {
	if w.decided {
		return
	}
	if code < 200 {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	if w.status == 0 {
		w.status = code
	}
}

func (w *gzipWriter) Write(b []byte) (int, error) {
	if !w.decided {
		w.decide(len(b))
	}
	if w.zw != nil {
		return w.zw.Write(b)
	}
	return w.ResponseWriter.Write(b)
}

// Flush implements http.Flusher: it sends what the compressor holds, then flushes the connection.
func (w *gzipWriter) Flush() {
	if !w.decided {
		w.decide(0)
	}
	if w.zw != nil {
		_ = w.zw.Flush()
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap gives http.ResponseController the writer underneath.
func (w *gzipWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// decide picks the encoding once the first n body bytes are known and sends the header.
func (w *gzipWriter) decide(n int) {
	w.decided = true
	if w.status == 0 {
		w.status = http.StatusOK
	}
	h := w.Header()
	// A part of a body (206, Content-Range) keeps its encoding: its byte ranges count the identity bytes.
	if compressible(h.Get("Content-Type")) && h.Get("Content-Encoding") == "" && h.Get("Content-Range") == "" &&
		w.status != http.StatusNoContent && w.status != http.StatusNotModified && w.status != http.StatusPartialContent {
		h.Add("Vary", "Accept-Encoding")
		size := n
		if cl, err := strconv.Atoi(h.Get("Content-Length")); err == nil {
			size = cl
		}
		if w.accepts && size >= minGzipBytes {
			h.Del("Content-Length")
			h.Set("Content-Encoding", "gzip")
			// The compressed bytes are another representation: a strong validator of the identity bytes
			// becomes weak (RFC 9110, section 8.8.1), which If-None-Match still matches.
			if etag := h.Get("ETag"); strings.HasPrefix(etag, `"`) {
				h.Set("ETag", "W/"+etag)
			}
			w.zw = gzipWriters.Get().(*gzip.Writer)
			w.zw.Reset(w.ResponseWriter)
		}
	}
	w.ResponseWriter.WriteHeader(w.status)
}

// finish sends the header if the handler wrote no body, and ends the gzip stream.
func (w *gzipWriter) finish() {
	if !w.decided {
		if w.status == 0 {
			// The handler wrote nothing at all: let the server answer its implicit 200.
			return
		}
		w.decide(0)
	}
	if w.zw != nil {
		_ = w.zw.Close()
		w.zw.Reset(nil)
		gzipWriters.Put(w.zw)
		w.zw = nil
	}
}
