# The two commands README promises, plus the benchmark and the acceptance suite.
SWIFT ?= swift

.PHONY: deps test-deps run test release bench bench-metrics bench-failover bench-acl bench-tls bench-encryption accept fuzz fuzz-build corpus tsan

# What building and running kvsh needs (libedit's headers, pkg-config).
deps:
	@./.ci/install-deps build

# What the tests need besides: redis-cli, redis-benchmark and redis-py for the interoperability tests, etcd for the
# failover tests, prometheus and prometheus_client for the operations tests.
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
	@python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install -q matplotlib || python3 -m pip install -q --break-system-packages matplotlib
	python3 Benchmarks/bench.py --kvsh .build/release/kvsh --markdown Benchmarks/work/latest.md
	# The same tables as PNG charts (Docs/charts/latest/), to show in Docs/Benchmarks.md beside the run's tables.
	python3 Benchmarks/charts.py --markdown Benchmarks/work/latest.md --out Docs/charts/latest

# What per-command statistics cost: redis-benchmark SET/GET -P 1 and -P 16, statistics on vs off, in one run.
bench-metrics: release
	python3 Benchmarks/metrics_overhead.py --kvsh .build/release/kvsh

# Failover time (kill -9 of the primary -> first acknowledged write on the new one), kvsh on etcd beside Redis
# Sentinel, 20 rounds each, alternating; installs etcd and redis-server when missing.
bench-failover: release
	@command -v etcd >/dev/null && command -v redis-server >/dev/null || ./.ci/install-deps test
	python3 Benchmarks/failover.py --kvsh .build/release/kvsh --markdown Benchmarks/work/failover.md

# ACL checks on the hot path: redis-benchmark SET/GET of app: keys, -P 1 and -P 16, a ~app:* user vs the default user.
bench-acl: release
	cd Benchmarks && python3 acl_overhead.py --kvsh ../.build/release/kvsh

# Encryption at rest: bulk load of 1M keys and startup, encrypted vs plain kvsh, in one run.
bench-encryption: release
	python3 Benchmarks/encryption_overhead.py --kvsh .build/release/kvsh --lines 1000000 --rounds 5

# TLS: redis-benchmark --tls SET/GET -P 1 and -P 16 against kvsh and redis-server, both with TLS, in one run.
bench-tls: release
	python3 Benchmarks/tls_bench.py --kvsh .build/release/kvsh

# The black-box acceptance suite kept beside the checkout, when it is there.
accept: release
	python3 ../shared/accept/accept.py --kvsh .build/release/kvsh

# Fuzzing: one libFuzzer executable per parser (package Fuzz/, entry points in Sources/KVFuzzTargets), built with
# AddressSanitizer, each run for FUZZ_SECONDS, FUZZ_JOBS at a time, from the committed seeds in Fuzz/Corpus/<target>/.
# New inputs libFuzzer finds go to .build-fuzz/corpus/<target>/, crashes to Fuzz/crashes/. See CONTRIBUTING.md.
FUZZ_SECONDS ?= 60
FUZZ_JOBS ?= 2
# debug keeps assertions and overflow checks in every dependency; release runs several times as many inputs.
FUZZ_CONFIG ?= debug
FUZZ_TARGETS ?= RequestDecoder ReplyParser Tokenizer JSONImport LogReplay ImageRestore RDBReader
FUZZ_SCRATCH = $(CURDIR)/.build-fuzz

fuzz-build:
	$(SWIFT) build -c $(FUZZ_CONFIG) --package-path Fuzz --scratch-path $(FUZZ_SCRATCH) \
		-Xswiftc -sanitize=fuzzer,address -Xswiftc -use-ld=lld

fuzz: fuzz-build
	@mkdir -p Fuzz/crashes $(FUZZ_SCRATCH)/logs
	@for t in $(FUZZ_TARGETS); do mkdir -p $(FUZZ_SCRATCH)/corpus/$$t; done
	@echo $(FUZZ_TARGETS) | tr ' ' '\n' | xargs -P $(FUZZ_JOBS) -I{} sh -c \
		'echo "fuzzing {} for $(FUZZ_SECONDS)s"; $(FUZZ_SCRATCH)/$(FUZZ_CONFIG)/Fuzz{} -max_total_time=$(FUZZ_SECONDS) -timeout=30 \
		 -print_final_stats=1 -artifact_prefix=Fuzz/crashes/{}- $(FUZZ_SCRATCH)/corpus/{} Fuzz/Corpus/{} \
		 >$(FUZZ_SCRATCH)/logs/{}.log 2>&1; echo "{} exited $$?"' ; \
	status=0; for t in $(FUZZ_TARGETS); do \
		printf '%-15s %s\n' $$t "$$(grep -h 'stat::number_of_executed_units' $(FUZZ_SCRATCH)/logs/$$t.log || echo 'no stats: see the log')"; \
	done; \
	if ls Fuzz/crashes/* >/dev/null 2>&1; then echo "crashes in Fuzz/crashes (logs in $(FUZZ_SCRATCH)/logs):"; ls Fuzz/crashes; status=1; fi; \
	exit $$status

# Rewrites the seed corpus from a debug build of kvsh.
corpus:
	$(SWIFT) build --product kvsh
	python3 Fuzz/make-corpus.py .build/debug/kvsh

# The concurrency tests (store, checkpoints and backups, server) under ThreadSanitizer, in a scratch path of their own.
# Every report is written to .build-tsan/reports/tsan.<pid>; the target fails if there is any.
TSAN_FILTER ?= KVStoreTests\.(ConcurrencyTests|CheckpointTests|BackupSchedulerTests)|KVServerTests\.
tsan:
	$(SWIFT) build --build-tests --scratch-path .build-tsan -Xswiftc -sanitize=thread -Xswiftc -DKVSH_TSAN
	@rm -rf .build-tsan/reports && mkdir -p .build-tsan/reports
	@status=0; TSAN_OPTIONS="halt_on_error=0 log_path=$(CURDIR)/.build-tsan/reports/tsan" \
		$(SWIFT) test --skip-build --scratch-path .build-tsan --filter '$(TSAN_FILTER)' || status=$$?; \
	if ls .build-tsan/reports/tsan.* >/dev/null 2>&1; then \
		echo "ThreadSanitizer reports (in .build-tsan/reports):"; grep -h '^WARNING\|^SUMMARY' .build-tsan/reports/tsan.* | sort | uniq -c; exit 1; \
	else echo "no ThreadSanitizer reports"; fi; exit $$status
