package grpcclient

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/roundrobin"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/serviceconfig"
)

// breakerBalancerName is the load-balancing policy of a connection with a breaker: round robin, whose every
// connectivity state is told to the connection's breaker before grpc-go installs the picker that goes
// with it. The breaker cannot learn it from ClientConn.GetState: grpc-go installs a new picker a moment
// before it updates the state GetState reads, so calls over a picker that is already READY could fail
// and open the breaker while GetState still said CONNECTING, and the READY that followed reset it.
const breakerBalancerName = "lastmile_breaker_round_robin"

func init() {
	balancer.Register(breakerBalancerBuilder{})
}

// pendingBreakers holds each breaker from the moment New names it in the service config until
// grpc.NewClient has parsed that config (ParseConfig puts the breaker itself into the parsed config).
var (
	pendingBreakers   sync.Map // string id -> *breaker
	lastBreakerID     atomic.Uint64
	errUnknownBreaker = errors.New("no such breaker")
)

// registerPending makes b known to ParseConfig under a new id; the caller must call forget(id) once
// grpc.NewClient returns.
func registerPending(b *breaker) (id string, forget func()) {
	id = strconv.FormatUint(lastBreakerID.Add(1), 10)
	pendingBreakers.Store(id, b)
	return id, func() { pendingBreakers.Delete(id) }
}

// breakerLBConfig is the parsed configuration of breakerBalancerName.
type breakerLBConfig struct {
	serviceconfig.LoadBalancingConfig
	b *breaker
}

type breakerBalancerBuilder struct{}

func (breakerBalancerBuilder) Name() string { return breakerBalancerName }

func (breakerBalancerBuilder) ParseConfig(js json.RawMessage) (serviceconfig.LoadBalancingConfig, error) {
	var cfg struct {
		Breaker string `json:"breaker"`
	}
	if err := json.Unmarshal(js, &cfg); err != nil {
		return nil, fmt.Errorf("%s config: %w", breakerBalancerName, err)
	}
	b, ok := pendingBreakers.Load(cfg.Breaker)
	if !ok {
		return nil, fmt.Errorf("%s config: breaker %q: %w", breakerBalancerName, cfg.Breaker, errUnknownBreaker)
	}
	return &breakerLBConfig{b: b.(*breaker)}, nil
}

func (breakerBalancerBuilder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	rcc := &reportingCC{ClientConn: cc}
	return &breakerBalancer{Balancer: balancer.Get(roundrobin.Name).Build(rcc, opts), cc: rcc}
}

// breakerBalancer is round robin reporting to the breaker of its configuration.
type breakerBalancer struct {
	balancer.Balancer
	cc *reportingCC
}

func (bb *breakerBalancer) UpdateClientConnState(ccs balancer.ClientConnState) error {
	cfg, ok := ccs.BalancerConfig.(*breakerLBConfig)
	if !ok || cfg.b == nil {
		return fmt.Errorf("%s: config %T without a breaker", breakerBalancerName, ccs.BalancerConfig)
	}
	bb.cc.b.Store(cfg.b)
	ccs.BalancerConfig = nil // round robin has no configuration
	return bb.Balancer.UpdateClientConnState(ccs)
}

// Close closes round robin and tells the breaker that the connection left READY: grpc-go closes the
// balancer when the connection goes idle (its transports closed) or shuts down.
func (bb *breakerBalancer) Close() {
	bb.Balancer.Close()
	if b := bb.cc.b.Load(); b != nil {
		b.balancerReported(connectivity.Idle)
	}
}

// reportingCC passes round robin's states to grpc-go, each one told to the breaker first.
type reportingCC struct {
	balancer.ClientConn
	b atomic.Pointer[breaker]
}

func (c *reportingCC) UpdateState(s balancer.State) {
	if b := c.b.Load(); b != nil {
		b.balancerReported(s.ConnectivityState)
	}
	c.ClientConn.UpdateState(s)
}
