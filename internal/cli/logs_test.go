package cli

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestServeLogLinesNameEachKeyOnce checks that every JSON log line of a whole serve, from start to stop,
// holds each key once: the process's "service":"lastmile" is on every line, so a line about one module
// names it under "module" (River's, the event logs', the migrations'), not under a second "service" key,
// which log tools read as the last one, losing the process's.
func TestServeLogLinesNameEachKeyOnce(t *testing.T) {
	s := startServe(t, nil, "--target", "all", "--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0",
		"--log-level", "debug")
	if err := s.stop(); err != nil {
		t.Fatalf("serve stopped with %v, want nil", err)
	}
	jobs := 0
	for line := range strings.Lines(s.logs.String()) {
		keys, err := jsonKeys(line)
		if err != nil {
			t.Errorf("log line is not a JSON object (%v): %s", err, line)
			continue
		}
		seen := map[string]bool{}
		for _, k := range keys {
			if seen[k] {
				t.Errorf("log line has the key %q twice: %s", k, line)
			}
			seen[k] = true
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		if rec["service"] != "lastmile" {
			t.Errorf("log line's service = %v, want lastmile: %s", rec["service"], line)
		}
		if rec["msg"] == "River client started" {
			jobs++
			if rec["module"] != "dispatch" || rec["component"] != "jobs" {
				t.Errorf("River's line names module %v, component %v; want dispatch, jobs: %s", rec["module"], rec["component"], line)
			}
		}
	}
	if jobs != 1 {
		t.Errorf("%d \"River client started\" lines, want 1; logs:\n%s", jobs, s.logs)
	}
}

// jsonKeys returns the keys of the JSON object line, in order, repeated ones included.
func jsonKeys(line string) ([]string, error) {
	dec := json.NewDecoder(strings.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("want an object, got %v (%v)", tok, err)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		keys = append(keys, tok.(string))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
	}
	return keys, nil
}
