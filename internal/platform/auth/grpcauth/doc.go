// Package grpcauth establishes the auth.Principal of a gRPC call: the Authenticator that reads the
// connection's verified service certificate and the request's bearer token, the client address a
// per-client limit keys on (ClientKey), and the method names of a generated service descriptor that an
// auth.Policy must cover (Methods). It is the transport half of package auth, kept apart so that domain
// packages, which import auth, never depend on gRPC.
//
// # Forwarded calls and the confused deputy
//
// A service that forwards an end user's request (the gateway) sends the user's token along. The user's
// token then decides authorization, never the forwarding service's identity: the call runs as the User,
// and Principal.Via records which service forwarded it, for logs and audits only. Otherwise a user could
// make the gateway perform, on their behalf, calls that only the gateway itself may make — the confused
// deputy problem.
//
// Edge proxies go one step further. The gateway carries the traffic of the public internet, so a call
// from the gateway WITHOUT a user token is Anonymous (with Via "gateway"), not a Service principal: the
// gateway's certificate proves where the bytes came from, not who asked for them. A method that only
// services may call is therefore unreachable through the gateway, whatever a browser sends. A service
// that must call another service as itself (courier looking up a user in identity) does so on its own
// connection without a user token.
package grpcauth
