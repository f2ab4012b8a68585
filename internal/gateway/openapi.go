package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"google.golang.org/grpc/codes"

	"lastmile/gen/openapi"
)

// servedOpenAPI is the OpenAPI document /openapi.json serves: the generated one (gen/openapi, linted in CI)
// with what protoc-gen-openapiv2 cannot express, so that every route the gateway serves is in it:
//   - a create answers 201 Created with a Location header (createdResponse), while the generator documents
//     every success as 200: the served document says 201 and documents the header (documentCreates);
//   - the routes the gateway writes itself, the browser session and the Server-Sent Events streams
//     (documentBrowserRoutes);
//   - GET /v1/tasks/{id} is answered to a share link's token alone, without credentials (documentShared).
var servedOpenAPI = sync.OnceValues(func() ([]byte, error) {
	var d map[string]any
	if err := json.Unmarshal(openapi.Document, &d); err != nil {
		return nil, fmt.Errorf("gateway: parse the OpenAPI document: %w", err)
	}
	paths, _ := d["paths"].(map[string]any)
	if paths == nil {
		return nil, fmt.Errorf("gateway: the OpenAPI document has no paths")
	}
	documentCreates(paths)
	documentBrowserRoutes(paths)
	if err := documentShared(paths); err != nil {
		return nil, err
	}
	out, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("gateway: encode the OpenAPI document: %w", err)
	}
	return out, nil
})

// documentCreates rewrites the success response of every create (a POST without a custom verb whose
// operation is named <Service>_Create* or <Service>_Register*, the operations createdResponse answers
// 201) from 200 to 201 with a Location header.
func documentCreates(paths map[string]any) {
	for path, item := range paths {
		post, _ := item.(map[string]any)["post"].(map[string]any)
		if post == nil || strings.Contains(path, ":") {
			continue
		}
		id, _ := post["operationId"].(string)
		_, rpc, _ := strings.Cut(id, "_")
		if !strings.HasPrefix(rpc, "Create") && !strings.HasPrefix(rpc, "Register") {
			continue
		}
		responses, _ := post["responses"].(map[string]any)
		ok, _ := responses["200"].(map[string]any)
		if ok == nil {
			continue
		}
		delete(responses, "200")
		ok["description"] = "Created."
		ok["headers"] = map[string]any{"Location": map[string]any{
			"type":        "string",
			"description": "The path of the new resource: " + path + "/{id}.",
		}}
		responses["201"] = ok
	}
}

func serveOpenAPI(w http.ResponseWriter, _ *http.Request, _ map[string]string) {
	doc, err := servedOpenAPI()
	if err != nil {
		// The document is embedded at build time and tested; this is a build defect.
		writeError(w, http.StatusInternalServerError, codes.Internal, "internal error", nil)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(doc)
}
