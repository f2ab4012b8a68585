package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestVersionShowsLinkedCommit checks that the commit stamped by `make build` (-ldflags -X ...Commit=)
// is what `lastmile version` prints.
func TestVersionShowsLinkedCommit(t *testing.T) {
	oldVersion, oldCommit := Version, Commit
	t.Cleanup(func() { Version, Commit = oldVersion, oldCommit })
	Version, Commit = "v1.2.3", "0123456789abcdef0123456789abcdef01234567"
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"lastmile", "version"}, Env{Stdout: &out}); err != nil {
		t.Fatalf("version: %v", err)
	}
	if want := "lastmile v1.2.3 (commit 0123456789abcdef0123456789abcdef01234567, "; !strings.HasPrefix(out.String(), want) {
		t.Errorf("version output = %q, want it to start with %q", out.String(), want)
	}
}
