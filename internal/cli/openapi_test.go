package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"lastmile/gen/openapi"
)

// TestOpenAPISecurityMatchesPolicy: an operation of the OpenAPI document is public (an empty security
// list) exactly when the authorization policy admits anonymous callers to its RPC; every other operation
// needs the document's bearer token. A method made public, or no longer public, must say so in its
// contract too (the openapiv2_operation option in api/proto).
func TestOpenAPISecurityMatchesPolicy(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]struct {
			OperationID string             `json:"operationId"`
			Security    *[]json.RawMessage `json:"security"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(openapi.Document, &doc); err != nil {
		t.Fatal(err)
	}
	// operationId is "<Service>_<Method>"; policy keys are "/<package>.<Service>/<Method>".
	rules := map[string]bool{}
	for method, rule := range policy() {
		svc, name, _ := strings.Cut(strings.TrimPrefix(method, "/"), "/")
		rules[svc[strings.LastIndexByte(svc, '.')+1:]+"_"+name] = rule.Public
	}
	ops := 0
	for path, methods := range doc.Paths {
		for verb, op := range methods {
			public, ok := rules[op.OperationID]
			if !ok {
				t.Errorf("%s %s: operation %q has no policy rule", strings.ToUpper(verb), path, op.OperationID)
				continue
			}
			documentedPublic := op.Security != nil && len(*op.Security) == 0
			if documentedPublic != public {
				t.Errorf("%s %s (%s): documented public = %v, policy public = %v", strings.ToUpper(verb), path, op.OperationID, documentedPublic, public)
			}
			ops++
		}
	}
	if ops < 25 {
		t.Errorf("checked %d operations, want every one of the document (at least 25)", ops)
	}
}
