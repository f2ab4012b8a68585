package grpcclient_test

import (
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"lastmile/internal/platform/grpcclient"
	"lastmile/internal/platform/grpcserver/grpctest"
)

// TestFixedFlowControlWindows: the client announces 1 MiB flow-control windows, per stream in its
// SETTINGS and for the connection in a WINDOW_UPDATE, which turns off grpc-go's bandwidth-delay-product
// estimation and the PING and WINDOW_UPDATE it sends for every response (BENCHMARKS.md).
func TestFixedFlowControlWindows(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("net.Listen() error = %v", err)
	}
	defer lis.Close()
	conn, err := grpcclient.New(grpcclient.Config{Target: lis.Addr().String(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	defer conn.Close()
	conn.Connect()

	raw, err := lis.Accept()
	if err != nil {
		t.Fatalf("Accept() error = %v", err)
	}
	defer raw.Close()
	if err := raw.SetDeadline(time.Now().Add(testTimeout)); err != nil {
		t.Fatalf("SetDeadline() error = %v", err)
	}
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(raw, preface); err != nil || string(preface) != http2.ClientPreface {
		t.Fatalf("client preface = %q, %v; want %q", preface, err, http2.ClientPreface)
	}
	fr := http2.NewFramer(raw, raw)
	grpctest.ExpectFlowControlWindows(t, fr, "client", 1<<20)
}
