package gateway

import (
	"context"
	"net/http"

	"google.golang.org/genproto/googleapis/api/httpbody"
	"google.golang.org/protobuf/proto"
)

// privateDownload is a forward-response option: a download served from google.api.HttpBody chunks (a proof
// of delivery's photo or signature, DispatchService.GetProofContent) is answered with Cache-Control:
// no-store, as JSON answers are (see responseWriter): it is a user's data, which shared caches must not
// keep, and the gateway cannot tell a cookie-authenticated request (which shared caches do not recognize
// as private) from another.
func privateDownload(_ context.Context, w http.ResponseWriter, resp proto.Message) error {
	if _, ok := resp.(*httpbody.HttpBody); ok && w.Header().Get("Cache-Control") == "" {
		w.Header().Set("Cache-Control", "no-store")
	}
	return nil
}
