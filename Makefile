# The two commands README promises, plus the benchmark and the acceptance suite.
SWIFT ?= swift

.PHONY: deps test-deps run test release bench accept

# What building and running kvsh needs (libedit's headers, pkg-config).
deps:
	@./.ci/install-deps build

# What the tests need besides: redis-cli, redis-benchmark and redis-py for the interoperability tests.
test-deps:
	@./.ci/install-deps test

# Set up and start the interactive shell on the default data directory ($KVSH_DATA_DIR, else ./kvsh-data).
run: release
	./.build/release/kvsh

# Set up and run the whole test suite (unit, engine, end-to-end through pipes and a pseudo-terminal).
# KVSH_REQUIRE_TOOLS=1: test-deps has installed redis-cli, redis-benchmark and redis-py, so a missing one fails the
# interoperability tests instead of skipping them (as it does under a plain `swift test`).
test: test-deps
	$(SWIFT) build --build-tests
	KVSH_REQUIRE_TOOLS=1 $(SWIFT) test --skip-build

release: deps
	$(SWIFT) build -c release --product kvsh

# Side-by-side benchmark against redis and sqlite3 (installs them if missing); see Docs/Benchmarks.md.
bench: release
	@command -v redis-server >/dev/null && command -v sqlite3 >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq redis-server redis-tools sqlite3)
	python3 Benchmarks/bench.py --kvsh .build/release/kvsh

# The black-box acceptance suite kept beside the checkout, when it is there.
accept: release
	python3 ../shared/accept/accept.py --kvsh .build/release/kvsh
