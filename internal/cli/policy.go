package cli

import (
	couriergrpc "lastmile/internal/courier/grpcapi"
	identitygrpc "lastmile/internal/identity/grpcapi"
	"lastmile/internal/platform/auth"
	routegrpc "lastmile/internal/route/grpcapi"
)

// policy is the authorization policy of every RPC this binary serves: each service's transport adapter
// declares the rules of its own methods, and the merged map is enforced by one interceptor before any
// handler runs. A method missing from it is denied.
func policy() auth.Policy {
	p := auth.Policy{}
	for _, part := range []auth.Policy{identitygrpc.Policy(), couriergrpc.Policy(), routegrpc.Policy()} {
		for method, rule := range part {
			p[method] = rule
		}
	}
	return p
}
