package grpcserver_test

import (
	"log/slog"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc/test/bufconn"

	"lastmile/internal/platform/grpcserver"
	"lastmile/internal/platform/grpcserver/grpctest"
)

// TestFixedFlowControlWindows: the server announces 1 MiB flow-control windows, per stream in its
// SETTINGS and for the connection in a WINDOW_UPDATE, which turns off grpc-go's bandwidth-delay-product
// estimation and the PING and WINDOW_UPDATE it sends for every call (BENCHMARKS.md).
func TestFixedFlowControlWindows(t *testing.T) {
	lis := bufconn.Listen(1 << 16)
	srv, err := grpcserver.New(grpcserver.Config{Listener: lis, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	grpctest.Serve(t, srv)

	conn, err := lis.Dial()
	if err != nil {
		t.Fatalf("Dial() error = %v", err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(testTimeout)); err != nil {
		t.Fatalf("SetDeadline() error = %v", err)
	}
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatalf("write client preface: %v", err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatalf("write SETTINGS: %v", err)
	}

	grpctest.ExpectFlowControlWindows(t, fr, "server", 1<<20)
}
