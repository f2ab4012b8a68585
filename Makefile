# Makefile: the developer and CI entry points. Every tool runs through `go tool` (pinned in go.mod).
GO ?= go
# BREAKING_AGAINST, when set, overrides the baseline commit of api/BREAKING_BASELINE for one comparison.
export BREAKING_AGAINST


.PHONY: screenshot tidy all build generate check-generated openapi-lint lint breaking vet staticcheck buflint test test-race test-postgres test-ci bench fuzz fuzz-short ci

all: build

# The version and commit `lastmile version` prints, stamped into the binary by `make build`.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -X lastmile/internal/cli.Version=$(VERSION) -X lastmile/internal/cli.Commit=$(COMMIT)

## build: compile every package, and the lastmile binary (./lastmile) with its version and commit.
build:
	$(GO) build ./...
	$(GO) build -ldflags "$(LDFLAGS)" -o lastmile ./cmd/lastmile

## generate: regenerate Go code and the OpenAPI document from api/proto.
generate:
	./scripts/generate.sh

## check-generated: fail when regeneration changes any committed file.
check-generated: generate
	@if [ -n "$$(git status --porcelain -- gen)" ]; then \
		echo "check-generated: generated code is out of date; run 'make generate' and commit:"; \
		git status --porcelain -- gen; git diff --stat -- gen; exit 1; \
	fi
	@echo "check-generated: gen/ is up to date"

## openapi-lint: lint the committed OpenAPI document, the one /openapi.json serves, with Redocly CLI's
## recommended rules (redocly.yaml says which are off, and why). npx fetches the pinned version from the npm
## registry: 1.34 is the newest line that runs on Debian 12's Node.js 18 (2.x needs Node 20.19 or later).
REDOCLY_CLI_VERSION = 1.34.20
openapi-lint:
	npx --yes @redocly/cli@$(REDOCLY_CLI_VERSION) lint gen/openapi/lastmile.swagger.json

buflint:
	./scripts/proto-deps.sh
	$(GO) tool buf lint api/proto
	$(GO) tool buf format --diff --exit-code api/proto

vet:
	$(GO) vet ./...

staticcheck:
	$(GO) tool staticcheck ./...

## lint: buf lint + buf format + go vet + staticcheck + gofmt.
lint: buflint vet staticcheck
	@out="$$(gofmt -l $$(git ls-files '*.go'))"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## breaking: buf breaking (WIRE_JSON) against the baseline commit in api/BREAKING_BASELINE.
breaking:
	./scripts/buf-breaking.sh

## test: the README's test command.
test:
	$(GO) test ./...

## The race detector slows the tests 5-10x, and CI runs packages side by side on two cores: the dispatch
## domain's tests alone took 240-410 s so, close to go test's default 10 minutes per package.
RACE_TIMEOUT ?= 30m

## -race also turns on -d=checkptr, which checks every unsafe.Pointer conversion at run time. The pure-Go SQLite
## (modernc.org/sqlite and its libc, C translated to Go) converts pointers on nearly every instruction: the
## checks were 30 % of the CPU time of a SQLite store's tests under -race, and they check the translator's
## output, not this repository's code. They stay on for every other package; the race detector stays on for
## all, modernc's too. RACE_GCFLAGS= (empty) checks modernc's pointers as well.
RACE_GCFLAGS ?= modernc.org/...=-d=checkptr=0
RACE = -race -gcflags="$(RACE_GCFLAGS)" -timeout $(RACE_TIMEOUT)

test-race:
	$(GO) test $(RACE) ./...

## test-postgres: the whole suite with PostgreSQL required (LASTMILE_TEST_POSTGRES_DSN must be set), then the
## dispatch service's tests (domain and gRPC adapter) again with every test system on PostgreSQL.
RACE_ALL_POSTGRES = LASTMILE_REQUIRE_POSTGRES=1 $(GO) test $(RACE) -count=1 ./...
DISPATCH_ON_POSTGRES = LASTMILE_REQUIRE_POSTGRES=1 LASTMILE_DISPATCH_TEST_ENGINE=postgres $(GO) test $(RACE) -count=1 ./internal/dispatch/ ./internal/dispatch/grpcapi/
test-postgres:
	$(RACE_ALL_POSTGRES)
	$(DISPATCH_ON_POSTGRES)

## test-ci: the tests of make ci: make test (`go test ./...`, the README's command), then test-postgres's whole
## suite, with test-postgres's dispatch-on-PostgreSQL run beside them from the start. That run mostly waits (on
## PostgreSQL and timers: 80 s of wall time for 30 s of CPU), as parts of the others do (the demo, the
## browser), so it fits into their gaps instead of adding its own minute and a half at the end. Its output is
## printed after theirs; the target fails if any of the three fails (the race suite is left out once
## `go test ./...` failed).
test-ci:
	@out="$$(mktemp)"; trap 'rm -f "$$out"' EXIT; \
	echo '$(DISPATCH_ON_POSTGRES) &  (its output follows the others)'; \
	$(DISPATCH_ON_POSTGRES) >"$$out" 2>&1 & pg=$$!; \
	echo '$(GO) test ./...'; $(GO) test ./... && \
	{ echo '$(RACE_ALL_POSTGRES)'; $(RACE_ALL_POSTGRES); }; rc=$$?; \
	wait $$pg; pgrc=$$?; \
	echo '$(DISPATCH_ON_POSTGRES): exit status '"$$pgrc"':'; cat "$$out"; \
	[ "$$rc" -eq 0 ] && [ "$$pgrc" -eq 0 ]

## bench: benchmarks that print ratios (see BENCHMARKS.md).
# screenshot: run the dashboard's browser test and keep its screenshot as docs/dashboard.png (the README's picture).
screenshot:
	LASTMILE_UPDATE_SCREENSHOT=1 $(GO) test -count=1 -run '^TestDashboard$$' ./test/browser/

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./bench/... ./internal/...

## fuzz: run each fuzz target of a decoder an outsider reaches for FUZZTIME (default 10s; longer runs:
## see README, "Development"). New interesting inputs are minimised for at most 10 runs: the targets that go
## through gRPC cover goroutine scheduling too, which makes minimisation by coverage stall for a minute.
FUZZTIME ?= 10s
FUZZ_TARGETS = \
	./internal/platform/auth/jwt:FuzzVerify \
	./internal/platform/auth/password:FuzzCheck \
	./internal/identity:FuzzListUsersPageToken \
	./internal/courier:FuzzListCouriersPageToken \
	./internal/courier/grpcapi:FuzzReportLocations \
	./internal/dispatch:FuzzListTasksPageToken \
	./internal/dispatch:FuzzStripMetadata \
	./internal/gateway:FuzzGateway
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; echo "fuzz: $$name in $$pkg for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 10x $$pkg; \
	done

## fuzz-short: every fuzz target for 2000 inputs, the short run make ci includes (under a minute in all).
## A count rather than a duration: a time limit that runs out while the engine minimises a new input
## fails the run with "context deadline exceeded", which says nothing about the code.
fuzz-short:
	$(MAKE) fuzz FUZZTIME=2000x

## ci: everything .ci/run checks.
ci: tidy check-generated openapi-lint lint breaking build test-ci fuzz-short

## tidy: fail when go.mod or go.sum are not tidy.
tidy:
	$(GO) mod tidy -diff
