package grpcclient

import (
	"fmt"
	"net"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/resolver"
)

// Target checks an address in any form Config.Target accepts and returns the grpc-go target to dial with
// the dial option that resolves its static lists: for an outside client that dials without New (the
// simulator, which wants neither the retries nor the circuit breaker of a service's client) and still
// takes the addresses serve's peer flags take.
func Target(addr string) (string, grpc.DialOption, error) {
	target, err := parseTarget(addr)
	if err != nil {
		return "", nil, err
	}
	return target, grpc.WithResolvers(staticBuilder{}), nil
}

// staticScheme is the resolver scheme of fixed replica lists: "static:///h1:p1,h2:p2".
const staticScheme = "static"

// maxStaticAddrs bounds a static list; a longer one is a configuration mistake, not a deployment.
const maxStaticAddrs = 256

// staticBuilder resolves a comma-separated list of host:port addresses once; the list never changes. It
// is registered per connection (grpc.WithResolvers), not globally.
type staticBuilder struct{}

func (staticBuilder) Scheme() string { return staticScheme }

func (staticBuilder) Build(target resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	addrs, err := parseStaticList(target.Endpoint())
	if err != nil {
		return nil, err
	}
	state := resolver.State{Addresses: make([]resolver.Address, 0, len(addrs))}
	for _, a := range addrs {
		host, _, _ := net.SplitHostPort(a)
		// The connection's authority is the whole list, which is no host name; each address carries its
		// own, for the :authority header and the TLS server name check.
		state.Addresses = append(state.Addresses, resolver.Address{Addr: a, ServerName: host})
	}
	if err := cc.UpdateState(state); err != nil {
		return nil, fmt.Errorf("static resolver: %w", err)
	}
	return staticResolver{}, nil
}

// parseStaticList splits and checks "h1:p1,h2:p2".
func parseStaticList(list string) ([]string, error) {
	parts := strings.Split(list, ",")
	if len(parts) > maxStaticAddrs {
		return nil, fmt.Errorf("static target lists %d addresses, more than %d", len(parts), maxStaticAddrs)
	}
	addrs := make([]string, 0, len(parts))
	for _, p := range parts {
		p = strings.TrimSpace(p)
		host, port, err := net.SplitHostPort(p)
		if err != nil || host == "" || port == "" {
			return nil, fmt.Errorf("static target %q: entry %q is not host:port", list, p)
		}
		addrs = append(addrs, p)
	}
	return addrs, nil
}

type staticResolver struct{}

func (staticResolver) ResolveNow(resolver.ResolveNowOptions) {}
func (staticResolver) Close()                                {}
