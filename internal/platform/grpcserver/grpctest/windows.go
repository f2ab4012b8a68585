package grpctest

import (
	"testing"

	"golang.org/x/net/http2"
)

// ExpectFlowControlWindows reads the first two frames a gRPC endpoint (who: "server" or "client") sends on
// fr after the preface and fails the test unless they announce fixed flow-control windows of window
// bytes: SETTINGS_INITIAL_WINDOW_SIZE for every stream, then a connection WINDOW_UPDATE that raises the
// connection's 65,535 bytes to window. grpcserver and grpcclient fix their windows this way, which turns
// off grpc-go's bandwidth-delay-product estimation (BENCHMARKS.md).
func ExpectFlowControlWindows(t *testing.T, fr *http2.Framer, who string, window uint32) {
	t.Helper()
	f, err := fr.ReadFrame()
	if err != nil {
		t.Fatalf("read the %s's first frame: %v", who, err)
	}
	settings, ok := f.(*http2.SettingsFrame)
	if !ok || settings.IsAck() {
		t.Fatalf("%s's first frame = %v, want its SETTINGS", who, f)
	}
	if got, ok := settings.Value(http2.SettingInitialWindowSize); !ok || got != window {
		t.Errorf("%s's SETTINGS_INITIAL_WINDOW_SIZE = %d (sent %t), want %d", who, got, ok, window)
	}
	f, err = fr.ReadFrame()
	if err != nil {
		t.Fatalf("read the %s's second frame: %v", who, err)
	}
	update, ok := f.(*http2.WindowUpdateFrame)
	if !ok {
		t.Fatalf("%s's second frame = %v, want a connection WINDOW_UPDATE", who, f)
	}
	const initial = 65535 // HTTP/2's initial connection window
	if update.StreamID != 0 || update.Increment != window-initial {
		t.Errorf("%s's WINDOW_UPDATE: stream %d increment %d, want stream 0 increment %d (a %d-byte connection window)",
			who, update.StreamID, update.Increment, window-initial, window)
	}
}
