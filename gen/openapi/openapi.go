// Package openapi embeds the generated OpenAPI document.
//
// The document itself (lastmile.swagger.json, OpenAPI v2) is written by protoc-gen-openapiv2 through
// ./scripts/generate.sh; this file is hand-written and the generator never touches it. It lives here because
// //go:embed cannot reach files in a parent directory.
package openapi

import _ "embed"

// Document is the OpenAPI v2 document describing every REST route of the gateway, as generated from the
// google.api.http annotations in api/proto. Callers must not modify it.
//
//go:embed lastmile.swagger.json
var Document []byte
