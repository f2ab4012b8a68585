package gateway_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/api/httpbody"
	"google.golang.org/grpc"

	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
	"lastmile/internal/gateway"
	"lastmile/internal/platform/grpcserver/grpctest"
)

// proofChunks serves GetProofContent as three HttpBody chunks.
type proofChunks struct {
	dispatchv1.UnimplementedDispatchServiceServer
	chunks [][]byte
}

func (p proofChunks) GetProofContent(_ *dispatchv1.GetProofContentRequest, stream grpc.ServerStreamingServer[httpbody.HttpBody]) error {
	for _, c := range p.chunks {
		if err := stream.Send(&httpbody.HttpBody{ContentType: "image/png", Data: c}); err != nil {
			return err
		}
	}
	return nil
}

// TestStreamedHttpBodyUnchanged: a download streamed as HttpBody chunks reaches the REST client byte for
// byte, with the chunks' content type; grpc-gateway's default would add a newline after every chunk. It is
// not to be cached by shared caches (Cache-Control: no-store).
func TestStreamedHttpBodyUnchanged(t *testing.T) {
	chunks := [][]byte{[]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{0, 1, 2}, 1000), []byte("IEND\xaeB`\x82")}
	s := grpc.NewServer()
	dispatchv1.RegisterDispatchServiceServer(s, proofChunks{chunks: chunks})
	conn := grpctest.ServeGRPC(t, s)
	g, err := gateway.New(t.Context(), gateway.Config{RequestTimeout: 5 * time.Second}, everyService(conn))
	if err != nil {
		t.Fatalf("gateway.New() = %v", err)
	}
	req := httptest.NewRequest(http.MethodGet, "/v1/tasks/0190b000-0000-7000-8000-000000000001/proofs/0190b000-0000-7000-8000-000000000002/content", http.NoBody)
	rec := httptest.NewRecorder()
	g.Handler().ServeHTTP(rec, req)
	body, _ := io.ReadAll(rec.Result().Body)
	if want := bytes.Join(chunks, nil); rec.Code != http.StatusOK || !bytes.Equal(body, want) {
		t.Errorf("GET proof content = %d with %d bytes, want 200 with the %d bytes of the chunks, unchanged", rec.Code, len(body), len(want))
	}
	if got := rec.Header().Get("Content-Type"); got != "image/png" {
		t.Errorf("Content-Type = %q, want image/png", got)
	}
	// A proof is a user's data, like every JSON answer: no shared cache may keep it.
	if got := rec.Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
}
