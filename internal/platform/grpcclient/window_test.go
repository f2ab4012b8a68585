package grpcclient_test

import (
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"lastmile/internal/platform/grpcclient"
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
	f, err := fr.ReadFrame()
	if err != nil {
		t.Fatalf("read the client's first frame: %v", err)
	}
	settings, ok := f.(*http2.SettingsFrame)
	if !ok || settings.IsAck() {
		t.Fatalf("client's first frame = %v, want its SETTINGS", f)
	}
	if got, ok := settings.Value(http2.SettingInitialWindowSize); !ok || got != 1<<20 {
		t.Errorf("SETTINGS_INITIAL_WINDOW_SIZE = %d (sent %t), want %d", got, ok, 1<<20)
	}
	f, err = fr.ReadFrame()
	if err != nil {
		t.Fatalf("read the client's second frame: %v", err)
	}
	update, ok := f.(*http2.WindowUpdateFrame)
	if !ok {
		t.Fatalf("client's second frame = %v, want a connection WINDOW_UPDATE", f)
	}
	if update.StreamID != 0 || update.Increment != 1<<20-65535 {
		t.Errorf("WINDOW_UPDATE stream %d increment %d, want stream 0 increment %d (a 1 MiB connection window)",
			update.StreamID, update.Increment, 1<<20-65535)
	}
}
