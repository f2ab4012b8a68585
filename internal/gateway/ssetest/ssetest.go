// Package ssetest reads Server-Sent Events streams in tests: the gateway's unit tests and the end-to-end
// tests of the browser routes parse the same framing with it.
package ssetest

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// Event is one block of a stream: an event (ID, Event, Data), a comment (a heartbeat) or a retry hint.
type Event struct {
	ID, Event, Data, Comment, Retry string
}

// Reader reads the blocks of one stream.
type Reader struct {
	t       testing.TB
	br      *bufio.Reader
	close   func()
	timeout time.Duration
}

// NewReader reads body; close ends the stream (it is called when a read times out) and timeout is the
// hang guard of each read.
func NewReader(t testing.TB, body io.Reader, close func(), timeout time.Duration) *Reader {
	return &Reader{t: t, br: bufio.NewReader(body), close: close, timeout: timeout}
}

// Close ends the stream.
func (r *Reader) Close() { r.close() }

// ReadByte reads one byte past the blocks read so far, for a test that expects the stream to end.
func (r *Reader) ReadByte() (byte, error) { return r.br.ReadByte() }

// Next returns the next block, failing the test on a line that is not id, event, data, retry or a comment,
// on a read error, or when nothing arrives within the timeout.
func (r *Reader) Next() Event {
	r.t.Helper()
	type result struct {
		ev  Event
		err error
	}
	c := make(chan result, 1)
	go func() {
		var ev Event
		for {
			line, err := r.br.ReadString('\n')
			if err != nil {
				c <- result{err: err}
				return
			}
			line = strings.TrimSuffix(line, "\n")
			if line == "" {
				c <- result{ev: ev}
				return
			}
			switch k, v, _ := strings.Cut(line, ": "); k {
			case "id":
				ev.ID = v
			case "event":
				ev.Event = v
			case "data":
				ev.Data = v
			case "retry":
				ev.Retry = v
			case "":
				ev.Comment = v
			default:
				c <- result{err: errors.New("unexpected line " + line)}
				return
			}
		}
	}()
	select {
	case res := <-c:
		if res.err != nil {
			r.t.Fatalf("read event: %v", res.err)
		}
		return res.ev
	case <-time.After(r.timeout):
		r.close()
		r.t.Fatalf("no event within %v", r.timeout)
		return Event{}
	}
}

// NextEvent returns the next block that is not a comment (heartbeats are skipped).
func (r *Reader) NextEvent() Event {
	r.t.Helper()
	for {
		if ev := r.Next(); ev.Comment == "" {
			return ev
		}
	}
}

// NextNamed returns the next event with a name, skipping heartbeats and a block holding only the retry
// hint.
func (r *Reader) NextNamed() Event {
	r.t.Helper()
	for {
		if ev := r.Next(); ev.Event != "" {
			return ev
		}
	}
}
