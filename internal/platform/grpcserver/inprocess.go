package grpcserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"lastmile/internal/platform/tlsutil"
)

// inProcessBuffer is the size of each direction's buffer of an in-process connection.
const inProcessBuffer = 1 << 20

// InProcessTarget is the target to give a client dialing with InProcess's options.
const InProcessTarget = "passthrough:///in-process"

// InProcess returns the dial options that connect a client in this process to this server in memory,
// calling as the service identity service: the connection skips the loopback TCP stack and, on a server
// with TLS, the TLS handshake and record encryption, while every call passes the same stats handlers and
// interceptor chain as one over the network. On a server with TLS, the calls carry the verified identity
// service, exactly as if the client had presented that service's certificate (only code in this process,
// holding the Server, can open such a connection); on a plaintext server, they carry none, as over TCP.
// Dial InProcessTarget with the options. Call InProcess before Serve; connections are served once Serve
// runs and end when the server stops.
func (s *Server) InProcess(service string) ([]grpc.DialOption, error) {
	auth := serviceAuthInfo(service)
	if got, ok := tlsutil.PeerServiceIdentity(auth.State); !ok || got != service {
		return nil, fmt.Errorf("grpc server: in-process identity %q is not a service name", service)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return nil, errors.New("grpc server: InProcess called after Serve")
	}
	lis, ok := s.inProcess[service]
	if !ok {
		lis = &identityListener{Listener: bufconn.Listen(inProcessBuffer), auth: auth}
		if s.inProcess == nil {
			s.inProcess = map[string]*identityListener{}
		}
		s.inProcess[service] = lis
	}
	return []grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return lis.DialContext(ctx)
		}),
		// No handshake on the client's side; the server's (inProcessCreds) attaches the identity.
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	}, nil
}

// serveInProcess serves the in-process listeners until the gRPC server stops; the returned function
// waits for that.
func (s *Server) serveInProcess() (wait func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var served sync.WaitGroup
	for _, lis := range s.inProcess {
		served.Go(func() { _ = s.grpc.Serve(lis) }) // ends with the server: Stop and GracefulStop close it
	}
	return served.Wait
}

// serviceAuthInfo is the TLS state a connection presenting service's certificate would have, as far as
// tlsutil.PeerServiceIdentity reads it.
func serviceAuthInfo(service string) credentials.TLSInfo {
	leaf := &x509.Certificate{URIs: []*url.URL{tlsutil.SPIFFEID(service)}}
	return credentials.TLSInfo{
		State:          tls.ConnectionState{Version: tls.VersionTLS13, HandshakeComplete: true, VerifiedChains: [][]*x509.Certificate{{leaf}}},
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
	}
}

// identityListener is an in-process listener whose connections carry one service identity.
type identityListener struct {
	*bufconn.Listener
	auth credentials.AuthInfo
}

func (l *identityListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &identityConn{Conn: c, auth: l.auth}, nil
}

// identityConn is the server's side of an in-process connection.
type identityConn struct {
	net.Conn
	auth credentials.AuthInfo
}

// inProcessCreds are the server's TLS credentials, except for in-process connections, which need no
// handshake: they get the identity of their listener.
type inProcessCreds struct {
	credentials.TransportCredentials
}

func (c inProcessCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if ic, ok := conn.(*identityConn); ok {
		return ic, ic.auth, nil
	}
	return c.TransportCredentials.ServerHandshake(conn)
}

func (c inProcessCreds) Clone() credentials.TransportCredentials {
	return inProcessCreds{c.TransportCredentials.Clone()}
}
