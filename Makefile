# make run: the plugin with throwaway stores and a demo app on :8080
# make test: every test, against throwaway stores unless AUTHGATE_POSTGRES,
#            AUTHGATE_REDIS, AUTHGATE_REDIS_CLUSTER ("<addr> ...") and
#            AUTHGATE_REDIS_SENTINEL ("<master> <addr> ...") name others
# make build: bin/caddy, built by xcaddy from xcaddy.json
# make bench: the gate measured against plain Caddy and the alternatives,
#             written to BENCHMARKS.md (cmd/bench; under 10 minutes)
# make fuzz: each fuzz target in FUZZ_TARGETS for $(FUZZTIME) (default 3m)
# make faults: the fault tests of make test (stores stopped, paused and
#              restarted under load, the mailer down, concurrent
#              registrations, reloads under traffic), longer and harder

# Our module is not published: the go commands must not look it up in the
# module proxy or the checksum database. -mod=mod lets them complete go.mod.
export GOPRIVATE := github.com/authgate/authgate
export GOFLAGS := -mod=mod

.PHONY: build run test faults bench fuzz deps deps-stores devstores clean

# Fuzz targets, one a line: <package dir>:<FuzzName>. Their seeds run with
# every go test; make fuzz searches beyond them.
define FUZZ_TARGETS
caddymodule/gatepath:FuzzPublic
caddymodule/username:FuzzCanonical
caddymodule/web:FuzzReadParams
caddymodule/web:FuzzParamsAlike
caddymodule/web:FuzzAuthorization
caddymodule/pages:FuzzSafeRedirect
caddymodule:FuzzTakeToken
caddymodule:FuzzCaddyfile
caddymodule/mail:FuzzSMTPReplies
endef
FUZZTIME ?= 3m

build:
	go run ./cmd/build -o bin/caddy

run: deps-stores build devstores
	bin/devstores -dir .data -demo 127.0.0.1:3000 -- bin/caddy run --config Caddyfile.example --adapter caddyfile

test: deps devstores
	bin/devstores -- go test -count=1 -timeout 12m ./...

# -long: more cycles of each fault, longer outages, more load
# (caddymodule/faults_test.go).
faults: deps-stores devstores
	bin/devstores -- go test -count=1 -timeout 60m -run 'Fault|Reload' ./caddymodule -args -long

# bin/bench also builds bin/caddy-security (once) and starts its own stores.
bench: build
	@$(call need,postgresql redis-server wrk stress-ng)
	go build -o bin/bench ./cmd/bench
	bin/bench

# go test -fuzz takes one package and one target at a time. A finding is
# written to the package's testdata/fuzz and fails the run.
fuzz:
	@set -e; $(foreach t,$(FUZZ_TARGETS), \
		echo "fuzz $(t) for $(FUZZTIME)"; \
		go test ./$(word 1,$(subst :, ,$(t))) -run XXX -fuzz '^$(word 2,$(subst :, ,$(t)))$$' -fuzztime $(FUZZTIME);)

# A binary rather than go run, which would stand between devstores and the
# terminal's signals.
devstores:
	go build -o bin/devstores ./cmd/devstores

# redis-tools: redis-cli, which creates the tests' Redis Cluster.
deps:
	@$(call need,postgresql redis-server redis-tools chromium)

deps-stores:
	@$(call need,postgresql redis-server)

clean:
	rm -rf bin .data

# need checks for the Debian packages in $(1); as root it installs the
# missing ones, otherwise it prints the command that would and fails.
need = missing=; \
	for p in $(1); do \
		case $$p in \
		postgresql) ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1;; \
		redis-tools) command -v redis-cli >/dev/null;; \
		*) command -v $$p >/dev/null;; \
		esac || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
		echo "missing:$$missing; install with: sudo apt-get install -y$$missing" >&2; \
		exit 1; \
	fi; \
	echo "installing$$missing"; \
	apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y$$missing
