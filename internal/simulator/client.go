package simulator

import (
	"cmp"
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
	identityv1 "lastmile/gen/go/lastmile/identity/v1"
	routev1 "lastmile/gen/go/lastmile/route/v1"
	"lastmile/internal/platform/grpcclient"
)

// callTimeout bounds every unary call of a bot: generous, because creating an account or logging in
// waits for a password-hashing slot on the server.
const callTimeout = 20 * time.Second

// clients are the public gRPC clients the bots use: one connection per distinct address, one in all
// when every service is at the deployment's target.
type clients struct {
	conns    []*grpc.ClientConn
	users    identityv1.UserServiceClient
	auth     identityv1.AuthServiceClient
	couriers courierv1.CourierServiceClient
	dispatch dispatchv1.DispatchServiceClient
	route    routev1.RouteServiceClient
}

// roundRobin spreads a connection's calls and streams over every address its target names (the replicas
// of a list or of a DNS name), as a load generator should; grpc-go's default would use the first alone.
const roundRobin = `{"loadBalancingConfig":[{"round_robin":{}}]}`

// dial connects to each service at its address in cfg as an outside client does: TLS that trusts the
// deployment's CA (cfg.TLS), or plaintext when that is nil (a deployment run with --insecure).
func dial(cfg Config) (*clients, error) {
	creds := insecure.NewCredentials()
	if cfg.TLS != nil {
		creds = credentials.NewTLS(cfg.TLS)
	}
	c := &clients{}
	byAddr := map[string]*grpc.ClientConn{}
	connect := func(addr string) (*grpc.ClientConn, error) {
		if conn := byAddr[addr]; conn != nil {
			return conn, nil
		}
		target, resolve, err := grpcclient.Target(addr)
		if err != nil {
			return nil, err
		}
		conn, err := grpc.NewClient(target, resolve, grpc.WithTransportCredentials(creds),
			grpc.WithDisableServiceConfig(), grpc.WithDefaultServiceConfig(roundRobin),
			grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}))
		if err != nil {
			return nil, fmt.Errorf("connect to %s: %w", addr, err)
		}
		byAddr[addr] = conn
		c.conns = append(c.conns, conn)
		return conn, nil
	}
	var conns [4]*grpc.ClientConn
	for i, addr := range []string{cfg.Addrs.Identity, cfg.Addrs.Courier, cfg.Addrs.Route, cfg.Addrs.Dispatch} {
		conn, err := connect(cmp.Or(addr, cfg.Target))
		if err != nil {
			c.close()
			return nil, err
		}
		conns[i] = conn
	}
	c.users, c.auth = identityv1.NewUserServiceClient(conns[0]), identityv1.NewAuthServiceClient(conns[0])
	c.couriers = courierv1.NewCourierServiceClient(conns[1])
	c.route = routev1.NewRouteServiceClient(conns[2])
	c.dispatch = dispatchv1.NewDispatchServiceClient(conns[3])
	return c, nil
}

// close closes the connections.
func (c *clients) close() {
	for _, conn := range c.conns {
		conn.Close()
	}
}

// account is a logged-in user: its tokens, refreshed before the access token expires.
type account struct {
	auth     identityv1.AuthServiceClient
	email    string
	password string

	// refreshMu serialises refreshes: a refresh token presented twice revokes the whole session.
	refreshMu sync.Mutex
	mu        sync.Mutex
	userID    string
	access    string
	refresh   string
	expires   time.Time
}

// login logs the account in.
func (a *account) login(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	resp, err := a.auth.Login(ctx, &identityv1.LoginRequest{Identifier: &identityv1.LoginRequest_Email{Email: a.email}, Password: a.password})
	if err != nil {
		return fmt.Errorf("log in as %s: %w", a.email, err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.userID, a.access, a.refresh, a.expires = resp.GetUser().GetId(), resp.GetAccessToken(), resp.GetRefreshToken(), resp.GetExpiresAt().AsTime()
	return nil
}

// refreshBefore is how long before its expiry an access token is replaced.
const refreshBefore = 2 * time.Minute

// token returns a valid access token, refreshing it (or logging in again) when it expires soon.
func (a *account) token(ctx context.Context) (string, error) {
	a.mu.Lock()
	access, expires := a.access, a.expires
	a.mu.Unlock()
	if time.Until(expires) > refreshBefore {
		return access, nil
	}
	a.refreshMu.Lock()
	defer a.refreshMu.Unlock()
	a.mu.Lock()
	access, refresh, expires := a.access, a.refresh, a.expires
	a.mu.Unlock()
	if time.Until(expires) > refreshBefore { // another caller refreshed meanwhile
		return access, nil
	}
	rctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	resp, err := a.auth.RefreshToken(rctx, &identityv1.RefreshTokenRequest{RefreshToken: refresh})
	if err != nil {
		// A refresh token spent by a concurrent refresh, or expired: log in again.
		if err := a.login(ctx); err != nil {
			return "", err
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.access, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.access, a.refresh, a.expires = resp.GetAccessToken(), resp.GetRefreshToken(), resp.GetExpiresAt().AsTime()
	return a.access, nil
}

// authed returns ctx carrying the account's bearer token.
func (a *account) authed(ctx context.Context) (context.Context, error) {
	tok, err := a.token(ctx)
	if err != nil {
		return nil, err
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok), nil
}

// call runs one unary call as the account with the call timeout.
func call[T any](ctx context.Context, a *account, f func(context.Context) (T, error)) (T, error) {
	var zero T
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	actx, err := a.authed(ctx)
	if err != nil {
		return zero, err
	}
	return f(actx)
}

// backoff returns the wait before attempt n (0-based) of something that keeps failing: 200 ms doubling up to
// 10 s, with jitter from the caller's random source.
func backoff(n int, jitter float64) time.Duration {
	d := 200 * time.Millisecond << min(n, 6)
	d = min(d, 10*time.Second)
	return time.Duration(float64(d) * (0.5 + jitter/2))
}

// sleep waits d or until ctx ends; it reports whether the wait ran out (false: ctx ended).
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
