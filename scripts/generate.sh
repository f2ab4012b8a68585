#!/usr/bin/env bash
# generate.sh regenerates gen/go and gen/openapi from api/proto. Generated files are committed and never
# edited by hand; `make check-generated` fails when this script changes anything.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/proto-deps.sh
rm -rf gen/go
find gen/openapi -name '*.json' -delete 2>/dev/null || true
go tool buf generate
