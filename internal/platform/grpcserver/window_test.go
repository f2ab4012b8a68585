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

	f, err := fr.ReadFrame()
	if err != nil {
		t.Fatalf("read the server's first frame: %v", err)
	}
	settings, ok := f.(*http2.SettingsFrame)
	if !ok || settings.IsAck() {
		t.Fatalf("server's first frame = %v, want its SETTINGS", f)
	}
	if got, ok := settings.Value(http2.SettingInitialWindowSize); !ok || got != 1<<20 {
		t.Errorf("SETTINGS_INITIAL_WINDOW_SIZE = %d (sent %t), want %d", got, ok, 1<<20)
	}
	f, err = fr.ReadFrame()
	if err != nil {
		t.Fatalf("read the server's second frame: %v", err)
	}
	update, ok := f.(*http2.WindowUpdateFrame)
	if !ok {
		t.Fatalf("server's second frame = %v, want a connection WINDOW_UPDATE", f)
	}
	if update.StreamID != 0 || update.Increment != 1<<20-65535 {
		t.Errorf("WINDOW_UPDATE stream %d increment %d, want stream 0 increment %d (a 1 MiB connection window)",
			update.StreamID, update.Increment, 1<<20-65535)
	}
}
