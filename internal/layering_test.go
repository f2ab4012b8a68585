// Package internal_test checks the layering rule of STYLE.md (rule 13): a domain package — internal/<svc>
// itself, for every service, and internal/geo — depends on no gRPC, no SQL and no generated protos. Its
// transport (grpcapi), storage (sqlite, postgres) and peer adapters live in subpackages that the domain
// never imports.
package internal_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// forbidden lists what a domain package must not depend on, directly or through any other package: an
// import path equal to an entry or below it ("google.golang.org/grpc/metadata" is below
// "google.golang.org/grpc").
var forbidden = []string{
	// The transport, and the platform packages built on it.
	"google.golang.org/grpc",
	"lastmile/internal/platform/grpcserver",
	"lastmile/internal/platform/grpcclient",
	"lastmile/internal/platform/auth/grpcauth",
	// Generated protos: the domain has its own types.
	"lastmile/gen",
	// SQL and its drivers belong in the store packages. (database/sql/driver, an interface that
	// github.com/google/uuid implements, is not SQL; see isForbidden.)
	"database/sql",
	"modernc.org/sqlite",
	"github.com/jackc/pgx",
	"github.com/mattn/go-sqlite3",
	"github.com/lib/pq",
	"lastmile/internal/platform/database",
}

func isForbidden(path string) bool {
	if path == "database/sql/driver" {
		return false
	}
	return slices.ContainsFunc(forbidden, func(f string) bool { return path == f || strings.HasPrefix(path, f+"/") })
}

// domainPackages discovers the domain packages from the repository rather than from a list that a new
// service could be forgotten in: every internal/<name> that holds Go code and is either the domain of an
// API package (api/proto/lastmile/<name>) or has a gRPC adapter (internal/<name>/grpcapi). A contract
// without a domain package yet (a service being designed) is logged, not checked.
func domainPackages(t *testing.T, root string) []string {
	t.Helper()
	names := map[string]bool{}
	apis, err := os.ReadDir(filepath.Join(root, "api", "proto", "lastmile"))
	if err != nil {
		t.Fatalf("read API packages: %v", err)
	}
	for _, e := range apis {
		if e.IsDir() {
			names[e.Name()] = true
		}
	}
	dirs, err := os.ReadDir(filepath.Join(root, "internal"))
	if err != nil {
		t.Fatalf("read internal: %v", err)
	}
	for _, e := range dirs {
		if e.IsDir() && isDir(filepath.Join(root, "internal", e.Name(), "grpcapi")) {
			names[e.Name()] = true
		}
	}
	var pkgs []string
	for name := range names {
		if !hasGoCode(t, filepath.Join(root, "internal", name)) {
			t.Logf("api/proto/lastmile/%s has no domain package internal/%s yet; nothing to check", name, name)
			continue
		}
		pkgs = append(pkgs, "lastmile/internal/"+name)
	}
	slices.Sort(pkgs)
	return pkgs
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

func hasGoCode(t *testing.T, dir string) bool {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	if err != nil {
		t.Fatalf("read %s: %v", dir, err)
	}
	return slices.ContainsFunc(entries, func(e os.DirEntry) bool {
		return !e.IsDir() && strings.HasSuffix(e.Name(), ".go") && !strings.HasSuffix(e.Name(), "_test.go")
	})
}

// listedPackage is the part of `go list -json` output the test reads.
type listedPackage struct {
	ImportPath string
	Imports    []string
}

// importGraph returns the import graph of pkgs and all their dependencies (not their tests), as
// `go list -deps` computes it for this platform.
func importGraph(t *testing.T, root string, pkgs []string) map[string][]string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("find the go command: %v", err)
	}
	cmd := exec.Command(gobin, append([]string{"list", "-deps", "-json=ImportPath,Imports"}, pkgs...)...)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", strings.Join(pkgs, " "), err, stderr.String())
	}
	graph := map[string][]string{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listedPackage
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		graph[p.ImportPath] = p.Imports
	}
	return graph
}

// violations returns, for each forbidden package that root reaches without passing through another
// forbidden one, the shortest import chain from root to it.
func violations(graph map[string][]string, root string) [][]string {
	prev := map[string]string{root: ""}
	queue := []string{root}
	var found [][]string
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if isForbidden(p) {
			var chain []string
			for q := p; q != ""; q = prev[q] {
				chain = append(chain, q)
			}
			slices.Reverse(chain)
			found = append(found, chain)
			continue
		}
		for _, imp := range graph[p] {
			if _, seen := prev[imp]; !seen {
				prev[imp] = p
				queue = append(queue, imp)
			}
		}
	}
	return found
}

func TestDomainPackagesImportNoTransportOrStorage(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	pkgs := domainPackages(t, root)
	// identity, courier, route and geo today; a discovery that finds fewer is broken, not a pass.
	for _, want := range []string{"lastmile/internal/identity", "lastmile/internal/courier", "lastmile/internal/route", "lastmile/internal/geo"} {
		if !slices.Contains(pkgs, want) {
			t.Fatalf("discovered domain packages %q, want them to include %s", pkgs, want)
		}
	}
	graph := importGraph(t, root, pkgs)
	for _, pkg := range pkgs {
		if _, ok := graph[pkg]; !ok {
			t.Fatalf("go list did not report %s", pkg)
		}
		for _, chain := range violations(graph, pkg) {
			t.Errorf("domain package %s depends on %s: %s", pkg, chain[len(chain)-1], strings.Join(chain, " -> "))
		}
	}
}

func TestViolationsFindsIndirectDependencies(t *testing.T) {
	graph := map[string][]string{
		"lastmile/internal/x":             {"fmt", "lastmile/internal/platform/auth"},
		"lastmile/internal/platform/auth": {"google.golang.org/grpc/metadata", "database/sql/driver"},
		"google.golang.org/grpc/metadata": {"google.golang.org/grpc/internal"},
	}
	got := violations(graph, "lastmile/internal/x")
	want := [][]string{{"lastmile/internal/x", "lastmile/internal/platform/auth", "google.golang.org/grpc/metadata"}}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("violations = %q, want %q", got, want)
	}
	if got := violations(map[string][]string{"a": {"database/sql/driver", "lastmile/gen/go/lastmile/geo/v1"}}, "a"); len(got) != 1 || got[0][1] != "lastmile/gen/go/lastmile/geo/v1" {
		t.Errorf("violations(a -> driver interface, generated proto) = %q, want only the generated proto", got)
	}
}
