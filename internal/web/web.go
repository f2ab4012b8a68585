// Package web serves lastmile's browser pages from files embedded in the binary: the dispatcher dashboard
// at / and the customer tracking page at /track/{id}, with their script, style sheet and icon under /ui/.
//
// The pages are our own HTML, CSS and JavaScript: no build step, no framework, no third-party code, and no
// inline script or style, so they run under the gateway's Content-Security-Policy "default-src 'self'".
// Everything they show comes from the public REST API and its Server-Sent Events, with the browser session
// cookie the login endpoint sets; this package serves files only and holds no data.
//
// Assets are served twice: under a content-hashed name (/ui/dash.3f9a2c1b.js), which the pages reference
// and browsers may cache for a year, and under their plain name with an ETag, for people and tools.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
)

//go:embed static
var static embed.FS

// Area is the city the map outlines when it opens: a centre and a radius, as the simulator draws its
// deliveries from. The map has no basemap offline, so the outline is what tells a dispatcher where they are.
type Area struct {
	// Name labels the outline, such as "Berlin".
	Name string `json:"name"`
	// Latitude and Longitude are the centre in degrees.
	Latitude  float64 `json:"latitude"`
	Longitude float64 `json:"longitude"`
	// RadiusMeters is the radius of the outline, in meters.
	RadiusMeters float64 `json:"radiusMeters"`
}

// Config configures the pages.
type Config struct {
	// Area, when set, is outlined on the map and framed when the dashboard opens with nothing to show yet.
	Area *Area
}

// asset is one embedded file, ready to serve.
type asset struct {
	body        []byte
	contentType string
	etag        string
	// hashed is the content-hashed name the pages use, such as "dash.3f9a2c1b.js"; "" for pages.
	hashed string
}

// Site serves the pages and their assets. Create it with New; it is safe for concurrent use.
type Site struct {
	pages  map[string]*asset // "index.html", "track.html"
	assets map[string]*asset // by plain and by hashed name
}

// Patterns are the GET routes a Site answers, in grpc-gateway's path syntax (see Mount).
var Patterns = []string{"/", "/track/{id}", "/ui/{file}"}

// New builds a Site from the embedded files. It fails when cfg.Area is not a real place or the files are
// inconsistent (a page that names an asset the binary does not hold).
func New(cfg Config) (*Site, error) {
	s := &Site{pages: map[string]*asset{}, assets: map[string]*asset{}}
	files, err := fs.ReadDir(static, "static")
	if err != nil {
		return nil, fmt.Errorf("web: read embedded files: %w", err)
	}
	for _, f := range files {
		body, err := static.ReadFile("static/" + f.Name())
		if err != nil {
			return nil, fmt.Errorf("web: read %s: %w", f.Name(), err)
		}
		if strings.HasSuffix(f.Name(), ".html") {
			s.pages[f.Name()] = &asset{body: body}
			continue
		}
		a := newAsset(body, f.Name())
		s.assets[f.Name()] = a
		s.assets[a.hashed] = a
	}
	config, err := configJSON(cfg)
	if err != nil {
		return nil, err
	}
	s.assets["config.json"] = newAsset(config, "config.json")

	// The pages name assets by their plain path; they are rewritten once to the hashed names.
	for name, p := range s.pages {
		for plain, a := range s.assets {
			if a.hashed != "" && plain != a.hashed {
				p.body = bytes.ReplaceAll(p.body, []byte(`"/ui/`+plain+`"`), []byte(`"/ui/`+a.hashed+`"`))
			}
		}
		if bytes.Contains(p.body, []byte(`"/ui/`)) && !hashedOnly(p.body, s.assets) {
			return nil, fmt.Errorf("web: %s names an asset the binary does not hold", name)
		}
		*p = *newPage(p.body)
	}
	if s.pages["index.html"] == nil || s.pages["track.html"] == nil {
		return nil, fmt.Errorf("web: embedded pages missing")
	}
	return s, nil
}

// hashedOnly reports whether every "/ui/..." reference in a page names a known asset.
func hashedOnly(page []byte, assets map[string]*asset) bool {
	for _, part := range bytes.Split(page, []byte(`"/ui/`))[1:] {
		name, _, ok := bytes.Cut(part, []byte(`"`))
		if !ok || assets[string(name)] == nil {
			return false
		}
	}
	return true
}

func configJSON(cfg Config) ([]byte, error) {
	if a := cfg.Area; a != nil {
		if a.Latitude < -85 || a.Latitude > 85 || a.Longitude < -180 || a.Longitude > 180 ||
			math.IsNaN(a.Latitude) || math.IsNaN(a.Longitude) || !(a.RadiusMeters > 0 && a.RadiusMeters <= 200_000) {
			return nil, fmt.Errorf("web: area %+v is not a place on the map (latitude within ±85, radius up to 200 km)", *a)
		}
	}
	b, err := json.Marshal(struct {
		Area *Area `json:"area,omitempty"`
	}{cfg.Area})
	if err != nil {
		return nil, fmt.Errorf("web: encode config: %w", err)
	}
	return b, nil
}

func newAsset(body []byte, name string) *asset {
	sum := sha256.Sum256(body)
	h := hex.EncodeToString(sum[:])
	ext := path.Ext(name)
	ct := mime.TypeByExtension(ext)
	if ct == "" {
		ct = "application/octet-stream"
	}
	return &asset{body: body, contentType: ct, etag: `"` + h[:16] + `"`, hashed: strings.TrimSuffix(name, ext) + "." + h[:8] + ext}
}

func newPage(body []byte) *asset {
	a := newAsset(body, "page.html")
	a.hashed = ""
	a.contentType = "text/html; charset=utf-8"
	return a
}

// Mount builds a Site (see New) and registers its routes (Patterns) on a grpc-gateway mux, so that they
// share the gateway's middleware: request ids, security headers, metrics and logs.
func Mount(mux *runtime.ServeMux, cfg Config) error {
	s, err := New(cfg)
	if err != nil {
		return err
	}
	h := func(w http.ResponseWriter, r *http.Request, _ map[string]string) { s.ServeHTTP(w, r) }
	for _, p := range Patterns {
		if err := mux.HandlePath(http.MethodGet, p, h); err != nil {
			return fmt.Errorf("web: register %s: %w", p, err)
		}
	}
	return nil
}

// ServeHTTP serves GET and HEAD of the pages and assets; other paths answer 404.
func (s *Site) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	switch {
	case p == "/":
		s.servePage(w, r, s.pages["index.html"])
	case strings.HasPrefix(p, "/track/") && validID(strings.TrimPrefix(p, "/track/")):
		s.servePage(w, r, s.pages["track.html"])
	case strings.HasPrefix(p, "/ui/") && s.assets[strings.TrimPrefix(p, "/ui/")] != nil:
		name := strings.TrimPrefix(p, "/ui/")
		a := s.assets[name]
		if name == a.hashed {
			// The name changes whenever the content does: a browser never needs to ask again.
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			w.Header().Set("Cache-Control", "no-cache")
		}
		serve(w, r, a)
	default:
		http.NotFound(w, r)
	}
}

// servePage serves an HTML page: revalidated on every load (it names the current assets), never framed,
// and under a CSP that allows only this origin, should the gateway not have set one already.
func (s *Site) servePage(w http.ResponseWriter, r *http.Request, a *asset) {
	h := w.Header()
	h.Set("Cache-Control", "no-cache")
	if h.Get("Content-Security-Policy") == "" {
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	}
	if h.Get("X-Frame-Options") == "" {
		h.Set("X-Frame-Options", "DENY")
	}
	serve(w, r, a)
}

func serve(w http.ResponseWriter, r *http.Request, a *asset) {
	w.Header().Set("Content-Type", a.contentType)
	w.Header().Set("ETag", a.etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}

// validID accepts the canonical UUID form of task ids, so that /track/<anything> is a 404, not a page.
func validID(id string) bool {
	if len(id) != 36 {
		return false
	}
	for i, c := range []byte(id) {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
		default:
			return false
		}
	}
	return true
}
