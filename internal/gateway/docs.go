package gateway

import (
	"embed"
	"fmt"
	"net/http"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
)

// docsFiles is the API reference page at /docs: our own HTML, CSS and JavaScript, which render
// /openapi.json in the browser. Nothing comes from a third party or a CDN, so the Content-Security-Policy
// ('self' only, no inline script or style) holds for it as for the dashboard.
//
//go:embed docs/index.html docs/docs.css docs/docs.js
var docsFiles embed.FS

// docsAssets are the files under /docs/ and their content types.
var docsAssets = map[string]string{
	"docs.css": "text/css; charset=utf-8",
	"docs.js":  "text/javascript; charset=utf-8",
}

// registerDocs serves the reference page at /docs and its assets at /docs/{file}.
func registerDocs(mux *runtime.ServeMux) error {
	// The page renders the served document: refuse to start with one that cannot be built.
	if _, err := servedOpenAPI(); err != nil {
		return err
	}
	if err := mux.HandlePath(http.MethodGet, "/docs", func(w http.ResponseWriter, _ *http.Request, _ map[string]string) {
		serveDocsFile(w, "index.html", "text/html; charset=utf-8")
	}); err != nil {
		return fmt.Errorf("gateway: register /docs: %w", err)
	}
	if err := mux.HandlePath(http.MethodGet, "/docs/{file}", func(w http.ResponseWriter, _ *http.Request, params map[string]string) {
		ct, ok := docsAssets[params["file"]]
		if !ok {
			writeError(w, http.StatusNotFound, codes.NotFound, "no such file", nil)
			return
		}
		serveDocsFile(w, params["file"], ct)
	}); err != nil {
		return fmt.Errorf("gateway: register /docs/{file}: %w", err)
	}
	return nil
}

func serveDocsFile(w http.ResponseWriter, name, contentType string) {
	b, err := docsFiles.ReadFile("docs/" + name)
	if err != nil {
		// The files are embedded at build time; a missing one is a build defect.
		writeError(w, http.StatusInternalServerError, codes.Internal, "internal error", nil)
		return
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	// Revalidate on every load: the files change with the binary, and they are small.
	h.Set("Cache-Control", "no-cache")
	_, _ = w.Write(b)
}
