#!/usr/bin/env bash
# buf-breaking.sh checks api/proto for wire and JSON breaking changes (WIRE_JSON) against the baseline
# commit named in api/BREAKING_BASELINE (BREAKING_AGAINST=<ref> overrides it, for a one-off comparison).
# The old contracts are checked out of git into a temporary directory with the same third-party imports,
# built into an image, and compared. A baseline that cannot be found is an error, never a pass: in a
# shallow clone the script fetches the commit first.
set -euo pipefail
cd "$(dirname "$0")/.."

baseline_file=api/BREAKING_BASELINE
against="${BREAKING_AGAINST:-}"
if [ -z "$against" ]; then
  against="$(grep -v '^[[:space:]]*#' "$baseline_file" | grep -v '^[[:space:]]*$' | head -1 | tr -d '[:space:]')"
  if ! [[ "$against" =~ ^[0-9a-f]{40}$ ]]; then
    echo "buf-breaking: $baseline_file must name a full 40-character commit hash, found '${against}'" >&2
    exit 1
  fi
fi

if ! git rev-parse --verify --quiet "${against}^{commit}" >/dev/null; then
  # CI clones may be shallow: fetch the baseline (or the whole history) before giving up.
  echo "buf-breaking: ${against} is not in this clone; fetching it" >&2
  git fetch --quiet origin "$against" 2>/dev/null ||
    { [ "$(git rev-parse --is-shallow-repository)" = true ] && git fetch --quiet --unshallow origin; } || true
fi
if ! git rev-parse --verify --quiet "${against}^{commit}" >/dev/null; then
  echo "buf-breaking: baseline ${against} is not reachable from this clone; fetch it (git fetch origin ${against}) or fix ${baseline_file}" >&2
  exit 1
fi
if [ -z "$(git ls-tree -r --name-only "$against" -- api/proto)" ]; then
  echo "buf-breaking: ${against} has no api/proto; nothing to compare" >&2
  exit 1
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
