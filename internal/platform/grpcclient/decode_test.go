package grpcclient_test

import (
	"testing"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"lastmile/internal/platform/grpcclient"
)

// TestDecodeResponse: the decoder's message is the response when it reports true; when it reports false
// the response is proto.Unmarshal's, whatever the decoder left in it; a response of another type is
// proto.Unmarshal's.
func TestDecodeResponse(t *testing.T) {
	conn := newClient(t, grpcclient.Config{Target: "passthrough:///decode", DialOptions: bufServer(t, &server{id: "backend-1"})})
	tests := []struct {
		name   string
		decode func(b []byte, m *testgrpc.SimpleResponse) bool
		want   string
	}{
		{"decoded", func(_ []byte, m *testgrpc.SimpleResponse) bool { m.ServerId = "decoded"; return true }, "decoded"},
		{"fallen back", func(_ []byte, m *testgrpc.SimpleResponse) bool { m.Hostname = "partial"; return false }, "backend-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := conn.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{}, grpcclient.DecodeResponse(tt.decode))
			if err != nil {
				t.Fatalf("UnaryCall() error = %v", err)
			}
			if res.GetServerId() != tt.want || res.GetHostname() != "" {
				t.Errorf("UnaryCall() = %v, want server id %q and no hostname", res, tt.want)
			}
		})
	}
	other := grpcclient.DecodeResponse(func(_ []byte, m *testgrpc.SimpleRequest) bool { return true })
	res, err := conn.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{}, other)
	if err != nil {
		t.Fatalf("UnaryCall() error = %v", err)
	}
	if res.GetServerId() != "backend-1" {
		t.Errorf("UnaryCall() with another type's decoder = %v, want server id backend-1", res)
	}
}
