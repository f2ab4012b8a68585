// Package property_test sends thousands of generated requests to every RPC of every service that a real
// in-process lastmile system registers, from every kind of caller, and checks that the system never
// answers Internal or Unknown, never panics, and never opens a circuit breaker: whatever a caller sends is
// either served or refused as that caller's error.
package property_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"buf.build/go/protovalidate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/timestamppb"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	identityv1 "lastmile/gen/go/lastmile/identity/v1"
	"lastmile/internal/cli"
	"lastmile/internal/platform/database/databasetest"
)

// Environment variables that make the run longer or reproduce another one.
const (
	// envCount is the number of requests, 5,000 by default.
	envCount = "LASTMILE_PROPERTY_COUNT"
	// envSeed is the seed of the generator, 1 by default.
	envSeed = "LASTMILE_PROPERTY_SEED"
)

// system is one running lastmile process.
type system struct {
	cli.Endpoints
	dataDir string
	logs    *logSink
}

// logSink keeps the lines of the process's log that report a panic.
type logSink struct {
	mu     sync.Mutex
	panics []string
}

func (l *logSink) Write(p []byte) (int, error) {
	for line := range strings.SplitSeq(string(p), "\n") {
		if strings.Contains(line, "panic") {
			l.mu.Lock()
			l.panics = append(l.panics, line)
			l.mu.Unlock()
		}
	}
	return len(p), nil
}

func (l *logSink) panicLines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.panics)
}

// The first admin, created from the environment as an operator would.
const (
	adminEmail    = "admin@example.com"
	adminPassword = "property admin password, long enough"
)

// start runs `lastmile serve` with every service in-process, as test/e2e does, with extra arguments, and
// waits until it is ready.
func start(t *testing.T, extra ...string) *system {
	t.Helper()
	dataDir := t.TempDir()
	env := map[string]string{"LASTMILE_ADMIN_EMAIL": adminEmail, "LASTMILE_ADMIN_PASSWORD": adminPassword}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan cli.Endpoints, 1)
	done := make(chan error, 1)
	s := &system{dataDir: dataDir, logs: &logSink{}}
	go func() {
		done <- cli.Run(ctx, append([]string{"lastmile", "serve",
			"--data-dir", dataDir,
			"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
			"--shutdown-timeout", "5s", "--log-level", "error"}, extra...), cli.Env{
			Getenv: func(k string) string { return env[k] },
			Stdout: io.Discard, Stderr: s.logs,
			Ready: func(e cli.Endpoints) { ready <- e },
			Now:   time.Now,
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("lastmile serve returned %v after cancellation, want nil", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("lastmile serve did not stop within 20s of cancellation")
		}
	})
	select {
	case s.Endpoints = <-ready:
	case err := <-done:
		done <- err // for the cleanup, which would otherwise wait for an exit already seen
		t.Fatalf("lastmile serve exited before it was ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("lastmile serve not ready within 30s")
	}
	return s
}

// conn returns a gRPC connection over TLS, presenting the client certificate of the service identity
// clientCert ("" for none).
func (s *system) conn(t *testing.T, clientCert string) *grpc.ClientConn {
	t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(s.dataDir, "tls", "ca.crt"))
	if err != nil {
		t.Fatalf("read CA: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("CA file holds no certificate")
	}
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if clientCert != "" {
		pair, err := tls.LoadX509KeyPair(filepath.Join(s.dataDir, "tls", clientCert+".crt"), filepath.Join(s.dataDir, "tls", clientCert+".key"))
		if err != nil {
			t.Fatalf("load client certificate %s: %v", clientCert, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	conn, err := grpc.NewClient(s.GRPC, grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// rest sends one JSON request to the gateway and returns the status and decoded body.
func (s *system) rest(t *testing.T, method, path, token string, body any) (int, map[string]any) {
	t.Helper()
	raw, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(method, "http://"+s.HTTP+path, bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("%s %s: decode body: %v", method, path, err)
	}
	return resp.StatusCode, out
}

// login returns the access token of email.
func (s *system) login(t *testing.T, email, password string) string {
	t.Helper()
	code, body := s.rest(t, http.MethodPost, "/v1/auth:login", "", map[string]string{"email": email, "password": password})
	token, _ := body["accessToken"].(string)
	if code != http.StatusOK || token == "" {
		t.Fatalf("login as %s = %d %v, want 200 with an access token", email, code, body)
	}
	return token
}

// createUser creates a user with role as the admin and returns its id.
func (s *system) createUser(t *testing.T, adminToken, email, password, role string) string {
	t.Helper()
	code, body := s.rest(t, http.MethodPost, "/v1/users", adminToken, map[string]string{
		"email": email, "password": password, "displayName": strings.Split(email, "@")[0], "role": role})
	id, _ := body["id"].(string)
	if code != http.StatusCreated || id == "" {
		t.Fatalf("create user %s = %d %v, want 201 with an id", email, code, body)
	}
	return id
}

// caller is one kind of caller: a connection (with or without a client certificate) and a token.
type caller struct {
	name  string
	conn  *grpc.ClientConn
	token string
	// rest is set for callers that may also use the REST gateway (users and anonymous callers; service
	// identities have no REST).
	rest bool
}

func (c caller) context(ctx context.Context) context.Context {
	if c.token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.token)
}

// rpc is one method of a registered service.
type rpc struct {
	full string // "/pkg.Service/Method"
	desc protoreflect.MethodDescriptor
}

// discover lists every method of every service the server registers, through gRPC reflection, with
// their descriptors from the generated code linked into this binary.
func discover(t *testing.T, conn *grpc.ClientConn) []rpc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatalf("open reflection: %v", err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	}); err != nil {
		t.Fatalf("reflection ListServices: %v", err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("reflection ListServices: %v", err)
	}
	_ = stream.CloseSend()
	var out []rpc
	for _, svc := range resp.GetListServicesResponse().GetService() {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc.GetName()))
		if err != nil {
			t.Fatalf("service %s is registered but has no descriptor: %v", svc.GetName(), err)
		}
		sd := d.(protoreflect.ServiceDescriptor)
		for i := range sd.Methods().Len() {
			md := sd.Methods().Get(i)
			out = append(out, rpc{full: fmt.Sprintf("/%s/%s", sd.FullName(), md.Name()), desc: md})
		}
	}
	return out
}

// finding is one response the property forbids.
type finding struct {
	method, caller string
	index          int
	code           codes.Code
	message        string
	request        string
}

func (f finding) String() string {
	return fmt.Sprintf("#%d %s as %s: %v %q\n    request: %s", f.index, f.method, f.caller, f.code, f.message, f.request)
}

// forbidden reports whether a response code says the server failed.
func forbidden(c codes.Code) bool {
	return c == codes.Internal || c == codes.Unknown || c == codes.DataLoss
}

// TestEveryRPCAnswersEveryRequest is issue 8's property: for every RPC of every registered service,
// generated requests (valid and invalid per its rules) from every kind of caller never produce Internal
// or Unknown, a panic, or an open circuit breaker. The stores are SQLite.
func TestEveryRPCAnswersEveryRequest(t *testing.T) {
	checkProperty(t, start(t))
}

// TestEveryRPCAnswersEveryRequestOnPostgreSQL is the property with every store on PostgreSQL, whose
// types refuse values SQLite stores (a NUL in a text column, say).
func TestEveryRPCAnswersEveryRequestOnPostgreSQL(t *testing.T) {
	checkProperty(t, start(t, "--database-url", databasetest.PostgresURL(t)))
}

// checkProperty sends the generated requests to s and checks the property.
func checkProperty(t *testing.T, s *system) {
	count := envInt(t, envCount, 5000)
	seed := uint64(envInt(t, envSeed, 1))

	admin := s.login(t, adminEmail, adminPassword)
	var ids, emails []string
	users := map[string]string{}
	for _, u := range []struct{ name, role string }{
		{"customer", "ROLE_CUSTOMER"}, {"courier", "ROLE_COURIER"}, {"dispatcher", "ROLE_DISPATCHER"},
		// Targets for the generated ids, so that admin calls that change or delete users do not hit the
		// callers above.
		{"victim1", "ROLE_CUSTOMER"}, {"victim2", "ROLE_COURIER"},
	} {
		email, password := u.name+"@example.com", "property password of "+u.name
		id := s.createUser(t, admin, email, password, u.role)
		users[u.name] = s.login(t, email, password)
		emails = append(emails, email)
		if strings.HasPrefix(u.name, "victim") {
			ids = append(ids, id)
		}
		if u.role == "ROLE_COURIER" {
			code, body := s.rest(t, http.MethodPost, "/v1/couriers", admin,
				map[string]any{"userId": id, "transportMode": "TRANSPORT_MODE_BICYCLE", "capacity": 2})
			courierID, _ := body["id"].(string)
			if code != http.StatusCreated || courierID == "" {
				t.Fatalf("register courier %s = %d %v, want 201", u.name, code, body)
			}
			ids = append(ids, courierID)
		}
	}

	plain := s.conn(t, "")
	callers := []caller{
		{name: "anonymous", conn: plain, rest: true},
		{name: "customer", conn: plain, token: users["customer"], rest: true},
		{name: "courier", conn: plain, token: users["courier"], rest: true},
		{name: "dispatcher", conn: plain, token: users["dispatcher"], rest: true},
		{name: "admin", conn: plain, token: admin, rest: true},
		{name: "service dispatch", conn: s.conn(t, "dispatch")},
		// The gateway's identity with a user's token: what every REST call becomes.
		{name: "service gateway for admin", conn: s.conn(t, "gateway"), token: admin},
	}
	rpcs := discover(t, plain)
	if len(rpcs) < 20 {
		t.Fatalf("discovered %d RPCs, want the methods of every service (at least 20)", len(rpcs))
	}
	checkRegressions(t, s, callers, rpcs)

	var (
		mu        sync.Mutex
		findings  []finding
		codeHist  = map[codes.Code]int{}
		valid     atomic.Int64
		restCalls atomic.Int64
		perRPC    = map[string]int{}
	)
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= count {
					return
				}
				m := rpcs[i%len(rpcs)]
				c := callers[(i/len(rpcs))%len(callers)]
				g := &generator{r: rand.New(rand.NewPCG(seed, uint64(i))), ids: ids, emails: emails, now: time.Now()}
				reqs := g.requests(m.desc)
				if protovalidate.Validate(reqs[0]) == nil {
					valid.Add(1)
				}
				// Every other request of an RPC with a REST route goes through the gateway, as the
				// caller's browser or app would send it, when that caller can use REST at all.
				via, code, msg := "gRPC", codes.OK, ""
				if rule := httpRule(m.desc); rule != nil && c.rest && i%2 == 0 {
					var ok bool
					if code, msg, ok = s.restCall(c, rule, reqs[0]); ok {
						via = "REST"
						restCalls.Add(1)
					} else {
						code, msg = call(c, m, reqs)
					}
				} else {
					code, msg = call(c, m, reqs)
				}
				mu.Lock()
				codeHist[code]++
				perRPC[m.full]++
				if forbidden(code) {
					findings = append(findings, finding{method: m.full, caller: c.name + " over " + via, index: i, code: code, message: msg,
						request: truncate(prototext.MarshalOptions{}.Format(reqs[0]), 400)})
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	t.Logf("%d requests (%d valid per their rules, %d through the REST gateway) to %d RPCs from %d callers in %v, seed %d; codes: %v",
		count, valid.Load(), restCalls.Load(), len(rpcs), len(callers), time.Since(start).Round(time.Millisecond), seed, codeHist)
	if restCalls.Load() == 0 {
		t.Error("no request went through the REST gateway")
	}

	if len(perRPC) != len(rpcs) {
		t.Errorf("requests reached %d of %d RPCs, want every one (raise %s)", len(perRPC), len(rpcs), envCount)
	}
	if v := valid.Load(); v == 0 || v == int64(count) {
		t.Errorf("%d of %d requests were valid per their rules, want both valid and invalid ones", v, count)
	}
	for i, f := range findings {
		if i == 20 {
			t.Errorf("... and %d more", len(findings)-20)
			break
		}
		t.Errorf("forbidden response %s", f)
	}
	if p := s.logs.panicLines(); len(p) > 0 {
		t.Errorf("the process logged %d panics; first: %s", len(p), truncate(p[0], 2000))
	}
	m := s.metrics(t)
	if m.opens != 0 || slices.ContainsFunc(m.states, func(v float64) bool { return v != 0 }) {
		t.Errorf("circuit breakers opened %v times, states %v; want none opened and all closed (0)", m.opens, m.states)
	}
	// The servers' own count sees what no caller of this test sees: the calls between services.
	for _, line := range m.failures {
		t.Errorf("/metrics: %s, want no server failure", line)
	}
}

// regressions are requests the property once failed on. Each is sent first on every run, by every
// caller, over gRPC and (when the method has a REST route and the caller uses REST) through the gateway.
var regressions = []struct {
	name, method string
	req          proto.Message
}{
	{
		"issue 8: a range from year 1 to 9999 overflowed get_availability.range (Internal)",
		"/lastmile.courier.v1.CourierService/GetAvailability",
		&courierv1.GetAvailabilityRequest{
			CourierId: "0b8e6c1e-4d5f-4a8e-9c3b-2f1a7d6e5c4b",
			StartTime: timestamppb.New(time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC)),
			EndTime:   timestamppb.New(time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)),
		},
	},
	{
		"property seed 1: malformed timestamps failed to evaluate in get_availability.range (Internal)",
		"/lastmile.courier.v1.CourierService/GetAvailability",
		&courierv1.GetAvailabilityRequest{
			CourierId: "0b8e6c1e-4d5f-4a8e-9c3b-2f1a7d6e5c4b",
			StartTime: &timestamppb.Timestamp{Seconds: -62135596801},
			EndTime:   &timestamppb.Timestamp{Seconds: 1, Nanos: -1},
		},
	},
	{
		"property seed 1 on PostgreSQL: a username with a NUL reached the store, which refused it (Internal)",
		"/lastmile.identity.v1.AuthService/Login",
		&identityv1.LoginRequest{Identifier: &identityv1.LoginRequest_Username{Username: "a\x00b\x1b[31m\r\n"}, Password: "some password"},
	},
}

// checkRegressions sends every regression request from every caller.
func checkRegressions(t *testing.T, s *system, callers []caller, rpcs []rpc) {
	t.Helper()
	for _, r := range regressions {
		i := slices.IndexFunc(rpcs, func(m rpc) bool { return m.full == r.method })
		if i < 0 {
			t.Errorf("regression %q: %s is not registered", r.name, r.method)
			continue
		}
		m := rpcs[i]
		for _, c := range callers {
			code, msg := call(c, m, []proto.Message{r.req})
			if forbidden(code) {
				t.Errorf("regression %q as %s over gRPC: %v %q", r.name, c.name, code, msg)
			}
			if rule := httpRule(m.desc); rule != nil && c.rest {
				if code, msg, ok := s.restCall(c, rule, r.req); ok && forbidden(code) {
					t.Errorf("regression %q as %s over REST: %v %q", r.name, c.name, code, msg)
				}
			}
		}
	}
}

// requests returns the messages a call of m sends: one for a unary or server-streaming call, one or two
// for a client stream. Valid or invalid is drawn per call.
func (g *generator) requests(m protoreflect.MethodDescriptor) []proto.Message {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(m.Input().FullName())
	if err != nil {
		panic(fmt.Sprintf("no type for %s: %v", m.Input().FullName(), err))
	}
	n := 1
	if m.IsStreamingClient() {
		n = 1 + g.r.IntN(2)
	}
	// A third of the calls are valid, a third wild, and a third valid but for one field: that one gets
	// past validation when the field has no rule, and takes its extreme value into the handler.
	mode := g.r.IntN(3)
	out := make([]proto.Message, n)
	for i := range out {
		msg := mt.New()
		g.message(msg, mode != 1, 0)
		if mode == 2 {
			g.mutateOne(msg)
		}
		out[i] = msg.Interface()
	}
	return out
}

// mutateOne replaces one field of m, at any depth, with a wild value.
func (g *generator) mutateOne(m protoreflect.Message) {
	for depth := 0; depth < maxDepth; depth++ {
		fields := m.Descriptor().Fields()
		if fields.Len() == 0 {
			return
		}
		fd := fields.Get(g.r.IntN(fields.Len()))
		// Descend into a set singular message half of the time.
		if fd.Kind() == protoreflect.MessageKind && !fd.IsList() && !fd.IsMap() && m.Has(fd) && g.r.IntN(2) == 0 &&
			m.Get(fd).Message().Descriptor().Fields().Len() > 0 {
			m = m.Mutable(fd).Message()
			continue
		}
		m.Clear(fd)
		if g.r.IntN(5) != 0 {
			g.field(m, fd, fieldRules(fd), false, depth)
		}
		return
	}
}

// streamWait is how long a stream may stay open: long enough for any refusal (authentication,
// authorization, validation of the first message) to arrive, short enough that watches, which never end
// by themselves, do not dominate the run.
const streamWait = 150 * time.Millisecond

// call sends reqs to m as c and returns the status code and message of the outcome. Streams are opened,
// sent the requests, half-closed and read until they end or streamWait passes.
func call(c caller, m rpc, reqs []proto.Message) (codes.Code, string) {
	outType, err := protoregistry.GlobalTypes.FindMessageByName(m.desc.Output().FullName())
	if err != nil {
		return codes.Unknown, fmt.Sprintf("no type for %s: %v", m.desc.Output().FullName(), err)
	}
	if !m.desc.IsStreamingClient() && !m.desc.IsStreamingServer() {
		ctx, cancel := context.WithTimeout(c.context(context.Background()), 10*time.Second)
		defer cancel()
		err := c.conn.Invoke(ctx, m.full, reqs[0], outType.New().Interface())
		st := status.Convert(err)
		return st.Code(), st.Message()
	}
	ctx, cancel := context.WithTimeout(c.context(context.Background()), streamWait)
	defer cancel()
	desc := &grpc.StreamDesc{StreamName: string(m.desc.Name()),
		ServerStreams: m.desc.IsStreamingServer(), ClientStreams: m.desc.IsStreamingClient()}
	stream, err := c.conn.NewStream(ctx, desc, m.full)
	if err != nil {
		st := status.Convert(err)
		return st.Code(), st.Message()
	}
	for _, r := range reqs {
		if err := stream.SendMsg(r); err != nil {
			break // the server ended the stream; RecvMsg reports how
		}
	}
	_ = stream.CloseSend()
	for {
		err := stream.RecvMsg(outType.New().Interface())
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) {
			return codes.OK, ""
		}
		st := status.Convert(err)
		if d, _ := ctx.Deadline(); st.Code() == codes.DeadlineExceeded && !time.Now().Before(d) {
			return codes.OK, "stream still open at the test's deadline"
		}
		return st.Code(), st.Message()
	}
}

// processMetrics is what the test reads from the process's /metrics.
type processMetrics struct {
	// opens is the sum of lastmile_grpc_client_breaker_opens_total.
	opens float64
	// states are the lastmile_grpc_client_breaker_state samples.
	states []float64
	// failures are the non-zero grpc_server_handled_total and grpc_client_handled_total samples with an
	// Internal, Unknown or DataLoss code.
	failures []string
}

// metrics reads the process's /metrics.
func (s *system) metrics(t *testing.T) processMetrics {
	t.Helper()
	resp, err := http.Get("http://" + s.Admin + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read /metrics: %v", err)
	}
	var m processMetrics
	found, handled := false, false
	for line := range strings.SplitSeq(string(raw), "\n") {
		name, _, _ := strings.Cut(line, "{")
		switch name {
		case "lastmile_grpc_client_breaker_opens_total", "lastmile_grpc_client_breaker_state",
			"grpc_server_handled_total", "grpc_client_handled_total":
		default:
			continue
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		switch name {
		case "lastmile_grpc_client_breaker_state":
			m.states = append(m.states, v)
		case "lastmile_grpc_client_breaker_opens_total":
			m.opens += v
			found = true
		default:
			handled = true
			failed := strings.Contains(line, `grpc_code="Internal"`) || strings.Contains(line, `grpc_code="Unknown"`) ||
				strings.Contains(line, `grpc_code="DataLoss"`)
			if failed && v > 0 {
				m.failures = append(m.failures, line)
			}
		}
	}
	if !found || len(m.states) == 0 || !handled {
		t.Fatal("/metrics lacks the breaker or handled-call metrics the test reads")
	}
	return m
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + fmt.Sprintf("... (%d bytes)", len(s))
}
