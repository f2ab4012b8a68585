package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// TestRegistryIsConsistent checks the registry against the generated descriptors and the policy: every
// gRPC service a module declares exists, has a rule for each of its methods, and is declared once; every
// service the policy covers is declared by a module; every declared peer is a service of another module.
func TestRegistryIsConsistent(t *testing.T) {
	pol := policy()
	declared := map[string]string{} // service -> module
	for _, m := range modules() {
		if m.name == "" || m.policy == nil || m.start == nil || len(m.services) == 0 {
			t.Errorf("module %+v: want a name, a policy, a start function and at least one service", m)
		}
		for _, s := range m.services {
			if prev, dup := declared[s.name]; dup {
				t.Errorf("service %s is declared by %s and %s", s.name, prev, m.name)
			}
			declared[s.name] = m.name
			d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(s.name))
			if err != nil {
				t.Errorf("module %s declares %s, which is not a generated service: %v", m.name, s.name, err)
				continue
			}
			sd := d.(protoreflect.ServiceDescriptor)
			for i := range sd.Methods().Len() {
				full := "/" + s.name + "/" + string(sd.Methods().Get(i).Name())
				if _, ok := pol[full]; !ok {
					t.Errorf("module %s: method %s has no policy rule", m.name, full)
				}
			}
		}
	}
	for full := range pol {
		svc, _, _ := strings.Cut(strings.TrimPrefix(full, "/"), "/")
		if _, ok := declared[svc]; !ok {
			t.Errorf("policy rule %s belongs to a service no module declares", full)
		}
	}
	for _, m := range modules() {
		for _, peer := range m.peers {
			o := owner(modules(), peer)
			if o == nil || o.name == m.name {
				t.Errorf("module %s declares peer %s, which no other module serves", m.name, peer)
			}
		}
	}
}

// TestNamesComeFromTheRegistry checks the lists derived from the registry: the targets, the peer flags
// and the service identities of the development PKI (every module, the gateway and every caller a
// policy names).
func TestNamesComeFromTheRegistry(t *testing.T) {
	if diff := cmp.Diff([]string{"identity", "courier", "route", "dispatch", "gateway"}, targetNames()); diff != "" {
		t.Errorf("targetNames (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"courier", "dispatch", "gateway", "identity", "route", "simulator"}, identities()); diff != "" {
		t.Errorf("identities (-want +got):\n%s", diff)
	}
	var help bytes.Buffer
	if _, err := parseServe([]string{"--help"}, Env{Getenv: envOf(nil), Stdout: &help}); err != errHelp {
		t.Fatalf("parseServe(--help) = %v, want errHelp", err)
	}
	for _, m := range moduleNames() {
		if want := "--" + m + "-addr"; !strings.Contains(help.String(), want) {
			t.Errorf("serve --help lacks %s:\n%s", want, help.String())
		}
	}
	var stores []string
	for _, m := range modules() {
		if m.store != nil {
			stores = append(stores, m.name)
		}
	}
	if diff := cmp.Diff([]string{"identity", "courier", "dispatch"}, stores); diff != "" {
		t.Errorf("modules with a store (-want +got):\n%s", diff)
	}
}
