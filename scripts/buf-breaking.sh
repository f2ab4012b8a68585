#!/usr/bin/env bash
# buf-breaking.sh checks api/proto for wire and JSON breaking changes (WIRE_JSON) against a git ref,
# default the previous commit (BREAKING_AGAINST=HEAD~1). The old contracts are checked out of git into a
# temporary directory with the same third-party imports, built into an image, and compared.
set -euo pipefail
cd "$(dirname "$0")/.."

against="${BREAKING_AGAINST:-HEAD~1}"
if ! git rev-parse --verify --quiet "${against}^{commit}" >/dev/null; then
  echo "buf-breaking: ref ${against} does not exist (first commit or shallow clone); nothing to compare" >&2
  exit 0
fi
if [ -z "$(git ls-tree -r --name-only "$against" -- api/proto)" ]; then
  echo "buf-breaking: ${against} has no api/proto; nothing to compare" >&2
  exit 0
fi

./scripts/proto-deps.sh
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
git archive "$against" api/proto | tar -x -C "$tmp"
cp -r .build "$tmp/.build"
cp buf.yaml "$tmp/buf.yaml"
go tool buf build "$tmp" -o "$tmp/against.binpb"
go tool buf breaking api/proto --against "$tmp/against.binpb"
echo "buf-breaking: no breaking changes against ${against}"
