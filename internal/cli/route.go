package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	routev1 "lastmile/gen/go/lastmile/route/v1"
	"lastmile/internal/gateway"
	"lastmile/internal/platform/grpcserver"
	"lastmile/internal/route"
	"lastmile/internal/route/geodesic"
	routegrpc "lastmile/internal/route/grpcapi"
	"lastmile/internal/route/osrm"
)

// routeConfig is the route service's configuration.
type routeConfig struct {
	Provider    string
	OSRMURL     string
	OSRMTimeout time.Duration
	CacheSize   int
}

// routeModule declares the route service: stateless, no peers, every call answerable whatever the state
// of the databases.
func routeModule() *module {
	var cfg routeConfig
	return &module{
		name:     "route",
		services: []grpcService{{name: routev1.RouteService_ServiceDesc.ServiceName, rest: gateway.Routes(routev1.RegisterRouteServiceHandlerClient, routev1.NewRouteServiceClient)}},
		policy:   routegrpc.Policy,
		flags: func(fs *flagSet) {
			fs.StringVar(&cfg.Provider, "route-provider", "geodesic", "route provider: geodesic or osrm")
			fs.StringVar(&cfg.OSRMURL, "osrm-url", "", "OSRM base URL (with --route-provider=osrm), e.g. http://osrm:5000")
			fs.DurationVar(&cfg.OSRMTimeout, "osrm-timeout", 2*time.Second, "timeout of one OSRM request")
			fs.IntVar(&cfg.CacheSize, "route-cache-size", 10000, "entries in the route estimate cache; 0 disables it")
		},
		validate: func() error {
			if cfg.CacheSize < 0 {
				return usageError{fmt.Errorf("--route-cache-size must not be negative (0 disables the cache), got %d", cfg.CacheSize)}
			}
			if cfg.OSRMTimeout <= 0 {
				return usageError{fmt.Errorf("--osrm-timeout must be positive, got %s", cfg.OSRMTimeout)}
			}
			switch cfg.Provider {
			case "geodesic":
			case "osrm":
				if cfg.OSRMURL == "" {
					return usageError{errors.New("--route-provider=osrm needs --osrm-url")}
				}
				if _, err := newRouteProvider(cfg); err != nil {
					return usageError{fmt.Errorf("--osrm-url: %w", err)}
				}
			default:
				return usageError{fmt.Errorf("--route-provider: want geodesic or osrm, got %q", cfg.Provider)}
			}
			return nil
		},
		start: func(_ context.Context, p *process, srv *grpcserver.Server) error {
			provider, err := newRouteProvider(cfg)
			if err != nil {
				return fmt.Errorf("route provider: %w", err)
			}
			// Cached estimates are keyed by departure hour, so a short TTL only bounds staleness of OSRM answers.
			svc := route.NewService(provider, route.Options{CacheSize: cfg.CacheSize, CacheTTL: 15 * time.Minute, Registerer: p.registry})
			routegrpc.Register(srv, routegrpc.NewServer(svc))
			p.logger.Info("route service registered", "provider", provider.Name())
			return nil
		},
	}
}

func newRouteProvider(cfg routeConfig) (route.Provider, error) {
	if cfg.Provider == "osrm" {
		return osrm.New(cfg.OSRMURL, osrm.Options{Timeout: cfg.OSRMTimeout})
	}
	return geodesic.New(geodesic.Options{})
}
