package cli

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"

	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/database"
	"lastmile/internal/platform/grpcserver"
)

// modules lists every service this binary can run, in start order. It is the one list of services: the
// --target values, the --<name>-addr peer flags, the service identities of the development PKI, the
// authorization policy, the migrations and the gateway's routes all come from it. Adding a service is
// one line here and its module function in a file of its own, in the Loki and Mimir style of a module
// registry.
func modules() []*module {
	return []*module{identityModule(), courierModule(), routeModule(), dispatchModule()}
}

// gatewayTarget is the --target name of the REST gateway, the one target that is not a gRPC service: it
// serves the REST routes of every module it can reach.
const gatewayTarget = "gateway"

// module declares one service: its name, the gRPC services it serves (with their REST routes and
// readiness), the peer services it calls, its authorization policy, its migrations, its flags and how it
// starts. A module function returns a fresh module whose closures share the service's own config struct,
// so that each service's configuration stays in its own file.
type module struct {
	// name is the --target name, the service identity (spiffe://lastmile/<name>), the SQLite file and
	// PostgreSQL schema of its store, and the stem of its --<name>-addr peer flag.
	name string
	// services are the gRPC services it serves.
	services []grpcService
	// peers are the full names of the gRPC services of other modules it calls. serve dials each one
	// before start (see process.peer) and warns about those that are neither hosted nor configured.
	peers []string
	// policy returns the authorization rules of its methods.
	policy func() auth.Policy
	// streams bounds its streaming methods, by full method name: open streams per caller and in total,
	// and idle timeouts. A streaming method it leaves out still gets grpcserver's default caps.
	streams map[string]grpcserver.StreamLimit
	// store declares its database; nil for a stateless service.
	store *storeDecl
	// flags registers its own flags, each with its LASTMILE_* variable; nil when it has none.
	flags func(fs *flagSet)
	// validate checks its flags once they are parsed; usage errors only. Nil when there is nothing to check.
	validate func() error
	// start builds the service and registers its gRPC services on srv. It runs before srv serves; work
	// that runs beside the servers goes to p.runners, shutdown work to srv.OnShutdown and p.afterStop.
	start func(ctx context.Context, p *process, srv *grpcserver.Server) error
}

// grpcService is one gRPC service of a module.
type grpcService struct {
	// name is the full service name, such as "lastmile.route.v1.RouteService": the name its health is
	// reported under and that clients health-check.
	name string
	// rest registers its REST routes on the gateway (the generated Register<Service>HandlerClient, adapted
	// by gateway.Routes); nil when it has none.
	rest func(context.Context, *runtime.ServeMux, grpc.ClientConnInterface) error
	// needsStore makes its health follow its module's database: NOT_SERVING while the database is
	// unreachable. A service that can answer without it (from memory, or failing call by call) leaves it
	// false, so that an outage does not take it out of every client's balancer.
	needsStore bool
}

// storeDecl declares a module's database: its embedded migrations per dialect, and whether it keeps an
// event log (package eventlog) beside its tables.
type storeDecl struct {
	SQLite, Postgres database.Migrations
	// EventLog adds the event log's migrations (sqllog.Migrations), applied after the service's own, and
	// lets the module open the log with process.eventLog.
	EventLog bool
	// Jobs adds River's tables (jobs.Migrate), applied last, for a module with durable jobs (package jobs).
	Jobs bool
}

// moduleNames returns the names of the modules, in start order.
func moduleNames() []string {
	var out []string
	for _, m := range modules() {
		out = append(out, m.name)
	}
	return out
}

// targetNames returns every valid --target value besides "all".
func targetNames() []string {
	return append(moduleNames(), gatewayTarget)
}

// owner returns the module that serves the gRPC service full, nil when none does.
func owner(mods []*module, full string) *module {
	for _, m := range mods {
		for _, s := range m.services {
			if s.name == full {
				return m
			}
		}
	}
	return nil
}

// policy is the authorization policy of every RPC this binary serves: each module declares the rules of
// its own methods, and the merged map is enforced by one interceptor before any handler runs. A method
// missing from it is denied.
func policy() auth.Policy {
	p := auth.Policy{}
	for _, m := range modules() {
		maps.Copy(p, m.policy())
	}
	return p
}

// streamLimits returns the stream limits of the modules this process serves: the gRPC server refuses a
// limit of a method it does not serve.
func streamLimits(mods []*module, targets map[string]bool) map[string]grpcserver.StreamLimit {
	out := map[string]grpcserver.StreamLimit{}
	for _, m := range mods {
		if targets[m.name] {
			maps.Copy(out, m.streams)
		}
	}
	return out
}

// identities returns the service identities the development PKI issues client certificates for: every
// module, the gateway, and every other caller a policy admits by name (the simulator). It derives them
// from the registry, so the PKI cannot miss a service.
func identities() []string {
	set := map[string]bool{gatewayTarget: true}
	for _, m := range modules() {
		set[m.name] = true
	}
	for _, rule := range policy() {
		for _, svc := range rule.Services {
			set[svc] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// splitTargets validates a --target list and expands "all". A name that is not a module (such as the
// simulator, a caller that is not served here) is a usage error: a target with nothing to serve must not
// start an empty server that reports healthy.
func splitTargets(list []string) (map[string]bool, error) {
	known := targetNames()
	out := map[string]bool{}
	for _, t := range list {
		t = strings.ToLower(strings.TrimSpace(t))
		switch {
		case t == "all":
			for _, k := range known {
				out[k] = true
			}
		case slices.Contains(known, t):
			out[t] = true
		case strings.Contains(t, ":"):
			return nil, usageError{fmt.Errorf("--target: %q is an address, not a service: serve's --target (LASTMILE_TARGET) names the services to run, all or a list of %s; simulate's address is its --target, or LASTMILE_SIMULATE_TARGET", t, strings.Join(known, ", "))}
		default:
			return nil, usageError{fmt.Errorf("--target: unknown service %q (want all or a list of %s)", t, strings.Join(known, ", "))}
		}
	}
	if len(out) == 0 {
		return nil, usageError{fmt.Errorf("--target: empty")}
	}
	return out, nil
}
