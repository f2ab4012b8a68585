#!/usr/bin/env bash
# proto-deps.sh copies the third-party .proto files our contracts import from the Go module cache into
# .build/proto-deps (git-ignored), so that no third-party source is committed; the versions are pinned here.
set -euo pipefail
cd "$(dirname "$0")/.."

GOOGLEAPIS_MODULE=github.com/grpc-ecosystem/grpc-gateway@v1.16.0
PROTOVALIDATE_MODULE=github.com/bufbuild/protovalidate@v1.2.2
out=.build/proto-deps

moddir() { go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'; }

googleapis="$(moddir "$GOOGLEAPIS_MODULE")/third_party/googleapis"
# The OpenAPI options come from the grpc-gateway v2 version go.mod pins, so they match the generator.
gateway_v2="$(moddir "github.com/grpc-ecosystem/grpc-gateway/v2@$(go list -m -f '{{.Version}}' github.com/grpc-ecosystem/grpc-gateway/v2)")"
protovalidate="$(moddir "$PROTOVALIDATE_MODULE")/proto/protovalidate"

rm -rf "$out"
mkdir -p "$out/google/api" "$out/buf/validate" "$out/protoc-gen-openapiv2/options"
install -m 0644 "$googleapis/google/api/annotations.proto" "$googleapis/google/api/http.proto" \
  "$googleapis/google/api/httpbody.proto" "$out/google/api/"
install -m 0644 "$protovalidate/buf/validate/validate.proto" "$out/buf/validate/"
install -m 0644 "$gateway_v2/protoc-gen-openapiv2/options/annotations.proto" \
  "$gateway_v2/protoc-gen-openapiv2/options/openapiv2.proto" "$out/protoc-gen-openapiv2/options/"
