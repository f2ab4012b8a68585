package gateway

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	identityv1 "lastmile/gen/go/lastmile/identity/v1"
)

// Browser session routes and cookies.
const (
	sessionPath = "/v1/session"
	refreshPath = "/v1/session/refresh"

	// accessCookie holds the access token; it is the bearer token of cookie-authenticated requests.
	accessCookie = "lm_access"
	// refreshCookie holds the refresh token, scoped to /v1/session so that only the refresh and logout
	// endpoints receive it.
	refreshCookie = "lm_refresh"
	// csrfCookie holds the double-submit token, readable by the page's JavaScript, which echoes it in
	// csrfHeader on state-changing requests.
	csrfCookie = "lm_csrf"
	csrfHeader = "X-Csrf-Token"

	// maxCookieBytes bounds the session cookie values the gateway accepts.
	maxCookieBytes = 4096
)

// jsonOut is the gateway's JSON output: camelCase names, zero values left out, as on the REST routes.
var jsonOut = protojson.MarshalOptions{UseProtoNames: false, EmitUnpopulated: false}

// cookieAuth makes the access cookie the request's bearer token when the request has no Authorization
// header. A state-changing request authenticated that way must pass the CSRF check; cookieAuth answers 403
// and returns false when it does not. Requests with an Authorization header are left as they are.
func (b *browser) cookieAuth(w http.ResponseWriter, r *http.Request) bool {
	if r.Header.Get("Authorization") != "" {
		return true
	}
	c, err := r.Cookie(accessCookie)
	if err != nil || c.Value == "" {
		return true
	}
	if len(c.Value) > maxCookieBytes {
		writeError(w, http.StatusUnauthorized, codes.Unauthenticated, "the session cookie is too long; log in again", nil)
		return false
	}
	if stateChanging(r.Method) {
		if err := checkCSRF(r, true); err != nil {
			writeCSRFError(w, err)
			return false
		}
	}
	r.Header.Set("Authorization", "Bearer "+c.Value)
	return true
}

func stateChanging(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// checkCSRF refuses cross-site requests: Sec-Fetch-Site, when the browser sends it, must say same-origin,
// and Origin, when sent, must be the gateway's own (its host equal to the request's Host). With
// requireToken, the X-CSRF-Token header must also equal the lm_csrf cookie (double submit).
func checkCSRF(r *http.Request, requireToken bool) error {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return fmt.Errorf("Sec-Fetch-Site is %q, not same-origin", site)
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		u, err := url.Parse(origin)
		if err != nil || u.Host == "" || u.Host != r.Host {
			return errors.New("the Origin header is not this server's origin")
		}
	}
	if !requireToken {
		return nil
	}
	header := r.Header.Get(csrfHeader)
	if header == "" {
		return errors.New("the X-CSRF-Token header is missing: send the value of the lm_csrf cookie")
	}
	c, err := r.Cookie(csrfCookie)
	if err != nil || c.Value == "" {
		return errors.New("the lm_csrf cookie is missing: log in again")
	}
	if subtle.ConstantTimeCompare([]byte(header), []byte(c.Value)) != 1 {
		return errors.New("the X-CSRF-Token header does not match the lm_csrf cookie")
	}
	return nil
}

func writeCSRFError(w http.ResponseWriter, err error) {
	writeError(w, http.StatusForbidden, codes.PermissionDenied, "CSRF check failed: "+err.Error(), nil)
}

// login serves POST /v1/session: it logs in with identity's Login RPC and keeps the tokens in cookies.
func (b *browser) login(w http.ResponseWriter, r *http.Request) {
	if err := checkCSRF(r, false); err != nil {
		writeCSRFError(w, err)
		return
	}
	req := &identityv1.LoginRequest{}
	if !b.readJSON(w, r, req) {
		return
	}
	ctx, cancel, ok := b.annotate(w, r, "/lastmile.identity.v1.AuthService/Login", sessionPath)
	if !ok {
		return
	}
	defer cancel()
	resp, err := b.auth.Login(ctx, req)
	if err != nil {
		b.g.handleError(ctx, b.g.mux, nil, w, r, err)
		return
	}
	csrf := rand.Text()
	b.setSessionCookies(w, r, resp.GetAccessToken(), resp.GetExpiresAt(), resp.GetRefreshToken(), resp.GetRefreshTokenExpiresAt(), csrf)
	b.writeJSON(w, map[string]proto.Message{
		"user": resp.GetUser(), "expiresAt": resp.GetExpiresAt(), "refreshTokenExpiresAt": resp.GetRefreshTokenExpiresAt(),
	}, csrf)
}

// whoami serves GET /v1/session: the signed-in user, for a page that was reloaded (the page cannot read the
// HttpOnly token). The user service authorizes the call with the caller's own token, as GET /v1/users/{id}.
func (b *browser) whoami(w http.ResponseWriter, r *http.Request) {
	token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	sub := tokenSubject(token)
	if sub == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="lastmile"`)
		writeError(w, http.StatusUnauthorized, codes.Unauthenticated, "no session: log in", nil)
		return
	}
	ctx, cancel, ok := b.annotate(w, r, "/lastmile.identity.v1.UserService/GetUser", sessionPath)
	if !ok {
		return
	}
	defer cancel()
	user, err := b.users.GetUser(ctx, &identityv1.GetUserRequest{Lookup: &identityv1.GetUserRequest_Id{Id: sub}})
	if err != nil {
		b.g.handleError(ctx, b.g.mux, nil, w, r, err)
		return
	}
	csrf := ""
	if c, err := r.Cookie(csrfCookie); err == nil {
		csrf = c.Value
	}
	b.writeJSON(w, map[string]proto.Message{"user": user}, csrf)
}

// refresh serves POST /v1/session/refresh: it rotates the tokens with identity's RefreshToken RPC.
func (b *browser) refresh(w http.ResponseWriter, r *http.Request) {
	if err := checkCSRF(r, true); err != nil {
		writeCSRFError(w, err)
		return
	}
	c, err := r.Cookie(refreshCookie)
	if err != nil || c.Value == "" || len(c.Value) > maxCookieBytes {
		b.clearSessionCookies(w, r)
		writeError(w, http.StatusUnauthorized, codes.Unauthenticated, "no session to refresh: log in", nil)
		return
	}
	if !b.discardBody(w, r) {
		return
	}
	ctx, cancel, ok := b.annotate(w, r, "/lastmile.identity.v1.AuthService/RefreshToken", refreshPath)
	if !ok {
		return
	}
	defer cancel()
	resp, err := b.auth.RefreshToken(ctx, &identityv1.RefreshTokenRequest{RefreshToken: c.Value})
	if err != nil {
		if status.Code(err) == codes.Unauthenticated {
			b.clearSessionCookies(w, r)
		}
		b.g.handleError(ctx, b.g.mux, nil, w, r, err)
		return
	}
	csrf, _ := r.Cookie(csrfCookie) // present: checkCSRF compared it
	b.setSessionCookies(w, r, resp.GetAccessToken(), resp.GetExpiresAt(), resp.GetRefreshToken(), resp.GetRefreshTokenExpiresAt(), csrf.Value)
	b.writeJSON(w, map[string]proto.Message{
		"expiresAt": resp.GetExpiresAt(), "refreshTokenExpiresAt": resp.GetRefreshTokenExpiresAt(),
	}, csrf.Value)
}

// logout serves DELETE /v1/session: it revokes the refresh token's family with identity's Logout RPC
// and clears the cookies. Without a session it only clears them.
func (b *browser) logout(w http.ResponseWriter, r *http.Request) {
	refresh, _ := r.Cookie(refreshCookie)
	_, accessErr := r.Cookie(accessCookie)
	if refresh != nil || accessErr == nil {
		if err := checkCSRF(r, true); err != nil {
			writeCSRFError(w, err)
			return
		}
	}
	if !b.discardBody(w, r) {
		return
	}
	if refresh != nil && refresh.Value != "" && len(refresh.Value) <= maxCookieBytes {
		ctx, cancel, ok := b.annotate(w, r, "/lastmile.identity.v1.AuthService/Logout", sessionPath)
		if !ok {
			return
		}
		defer cancel()
		if _, err := b.auth.Logout(ctx, &identityv1.LogoutRequest{RefreshToken: refresh.Value}); err != nil {
			b.g.handleError(ctx, b.g.mux, nil, w, r, err)
			return
		}
	}
	b.clearSessionCookies(w, r)
	w.WriteHeader(http.StatusNoContent)
}

// annotate returns the context of a call the browser routes make: the same outgoing metadata (bearer
// token, request id, client address) grpc-gateway forwards on the REST routes, bounded by RequestTimeout.
func (b *browser) annotate(w http.ResponseWriter, r *http.Request, rpc, route string) (context.Context, context.CancelFunc, bool) {
	ctx, err := runtime.AnnotateContext(r.Context(), b.g.mux, r, rpc, runtime.WithHTTPPathPattern(route))
	if err != nil {
		b.g.handleError(r.Context(), b.g.mux, nil, w, r, status.Error(codes.InvalidArgument, err.Error()))
		return nil, nil, false
	}
	ctx, cancel := context.WithTimeout(ctx, b.g.cfg.RequestTimeout)
	return ctx, cancel, true
}

// readJSON decodes the request body into m as the REST routes do (unknown fields are an error), and
// answers 415 or 400 itself when it cannot.
func (b *browser) readJSON(w http.ResponseWriter, r *http.Request, m proto.Message) bool {
	if encodedBody(w, r) {
		return false
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, codes.InvalidArgument, "the request body must be JSON (Content-Type: application/json)", nil)
		return false
	}
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		if bodyTooLarge(r, err) {
			writeError(w, http.StatusRequestEntityTooLarge, codes.ResourceExhausted,
				fmt.Sprintf("request body exceeds %d bytes", b.g.cfg.MaxBodyBytes), nil)
			return false
		}
		writeError(w, http.StatusBadRequest, codes.InvalidArgument, "the request body could not be read", nil)
		return false
	}
	if err := protojson.Unmarshal(raw, m); err != nil {
		writeError(w, http.StatusBadRequest, codes.InvalidArgument, "the request body is not valid: "+err.Error(), nil)
		return false
	}
	return true
}

// discardBody accepts an empty body or an empty JSON object, the bodies of the refresh and logout routes.
func (b *browser) discardBody(w http.ResponseWriter, r *http.Request) bool {
	raw, err := io.ReadAll(io.LimitReader(r.Body, 64))
	if err != nil {
		writeError(w, http.StatusBadRequest, codes.InvalidArgument, "the request body could not be read", nil)
		return false
	}
	var obj map[string]json.RawMessage
	if len(raw) != 0 && (json.Unmarshal(raw, &obj) != nil || len(obj) != 0) {
		writeError(w, http.StatusBadRequest, codes.InvalidArgument, "this route takes no request body (or {})", nil)
		return false
	}
	return true
}

// writeJSON answers 200 with the messages as one JSON object, plus the CSRF token.
func (b *browser) writeJSON(w http.ResponseWriter, fields map[string]proto.Message, csrf string) {
	out := map[string]any{"csrfToken": csrf}
	for k, m := range fields {
		if m == nil || !m.ProtoReflect().IsValid() {
			continue
		}
		raw, err := jsonOut.Marshal(m)
		if err != nil {
			writeError(w, http.StatusInternalServerError, codes.Internal, "internal error", nil)
			return
		}
		out[k] = json.RawMessage(raw)
	}
	body, err := json.Marshal(out)
	if err != nil {
		writeError(w, http.StatusInternalServerError, codes.Internal, "internal error", nil)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// setSessionCookies sets the access, refresh and CSRF cookies, each living as long as its token.
func (b *browser) setSessionCookies(w http.ResponseWriter, r *http.Request, access string, accessExp *timestamppb.Timestamp, refresh string, refreshExp *timestamppb.Timestamp, csrf string) {
	now := time.Now()
	refreshAge := maxAge(refreshExp, now)
	http.SetCookie(w, b.cookie(r, accessCookie, access, "/", maxAge(accessExp, now), true))
	http.SetCookie(w, b.cookie(r, refreshCookie, refresh, sessionPath, refreshAge, true))
	http.SetCookie(w, b.cookie(r, csrfCookie, csrf, "/", refreshAge, false))
}

// clearSessionCookies expires the three session cookies.
func (b *browser) clearSessionCookies(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, b.cookie(r, accessCookie, "", "/", -1, true))
	http.SetCookie(w, b.cookie(r, refreshCookie, "", sessionPath, -1, true))
	http.SetCookie(w, b.cookie(r, csrfCookie, "", "/", -1, false))
}

func (b *browser) cookie(r *http.Request, name, value, path string, age int, httpOnly bool) *http.Cookie {
	return &http.Cookie{
		Name: name, Value: value, Path: path, MaxAge: age, HttpOnly: httpOnly,
		Secure: r.TLS != nil || b.cfg.SecureCookies, SameSite: http.SameSiteStrictMode,
	}
}

// maxAge is the cookie lifetime, in whole seconds, of a token expiring at exp; at least 1 (0 would mean a
// session cookie, and a negative value deletion).
func maxAge(exp *timestamppb.Timestamp, now time.Time) int {
	secs := math.Round(exp.AsTime().Sub(now).Seconds())
	if secs < 1 {
		return 1
	}
	return int(secs)
}
