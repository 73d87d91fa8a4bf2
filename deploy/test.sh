#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: installs what is needed,
# builds, starts a throw-away local Kafka, runs every unit and integration test
# (ctest), and stops Kafka. Exits non-zero when anything fails; when Kafka
# cannot start it says why and prints the tail of the broker log.
#
# Usage: deploy/test.sh [ctest arguments...]   e.g. deploy/test.sh -L unit
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

deploy/install-deps.sh
deploy/build.sh
# The client examples of every language (their pinned packages and stubs).
for setup in client/*/setup.sh; do
  echo "test: $setup" >&2
  "$setup"
done

KAFKA_DIR="$REPO/build/kafka-test"
# The secured Kafka (SASL_SSL and ACLs) that tests/integration/secure_kafka_test.cc
# starts in build/kafka-secure, stopped too.
stop_kafka() {
  deploy/kafka/kafka.sh stop "$KAFKA_DIR" >/dev/null 2>&1 || true
  deploy/kafka/kafka.sh stop "$REPO/build/kafka-secure" >/dev/null 2>&1 || true
}
trap stop_kafka EXIT

echo "test: starting the local Kafka" >&2
if ! brokers="$(deploy/kafka/kafka.sh start "$KAFKA_DIR" | tail -n 1)" || [[ -z "$brokers" ]]; then
  echo "test: FAILED: the local Kafka did not start (reason and broker log above)" >&2
  exit 1
fi
echo "test: Kafka at $brokers" >&2
export TEST_KAFKA_BROKERS="$brokers"
export GRPCURL="$REPO/build/tools/bin/grpcurl"

# With no arguments: every test but the soak test (label soak, 10 minutes;
# deploy/test.sh -L soak runs it), then the unit and integration suites again
# built with AddressSanitizer and UBSan, then a short run of each fuzz target
# (deploy/fuzz.sh). With arguments: ctest with them only.
full=0
if (($# == 0)); then
  full=1
  set -- -LE soak
fi
status=0
ctest --test-dir "$REPO/build" --output-on-failure --timeout 600 -j2 "$@" || status=$?
# The figures each fault test printed (ctest shows a test's output only when
# it fails).
if grep -q '^FAULT ' "$REPO/build/Testing/Temporary/LastTest.log" 2>/dev/null; then
  echo "test: fault suite figures:" >&2
  grep -h '^FAULT \|^  [A-Z_]*: ' "$REPO/build/Testing/Temporary/LastTest.log" >&2 || true
fi
if [[ $status -ne 0 ]]; then
  echo "test: FAILED (ctest exit $status); last lines of the Kafka log:" >&2
  deploy/kafka/kafka.sh logtail "$KAFKA_DIR" 40 >&2 || true
  exit $status
fi
((full)) || exit 0

# One clang build with AddressSanitizer and UBSan (EVENTBUS_FUZZ implies
# EVENTBUS_ASAN) serves both: the unit and integration suites run in it, and
# deploy/fuzz.sh runs its libFuzzer targets (it finds them built).
echo "test: the unit and integration suites with AddressSanitizer and UBSan (clang, build/fuzz)" >&2
CC=clang CXX=clang++ cmake -S "$REPO" -B "$REPO/build/fuzz" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER=clang++ -DEVENTBUS_FUZZ=ON -DEVENTBUS_DEPS_PREFIX="$REPO/build/deps" >/dev/null
cmake --build "$REPO/build/fuzz" -j"$(nproc)" --target eventbus_unit_tests \
  eventbus_integration_tests eventbus-sidecar eventbus eventbus_fuzzers
# Every report fails the test: ASan and LeakSanitizer abort, UB aborts
# (-fno-sanitize-recover).
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
ctest --test-dir "$REPO/build/fuzz" --output-on-failure --timeout 600 -j2 -L 'unit|integration' \
  -E '^(cross_language_examples|readme_grpcurl_recipes|bench_smoke)$' || status=$?
if [[ $status -ne 0 ]]; then
  echo "test: FAILED under AddressSanitizer/UBSan (ctest exit $status)" >&2
  exit $status
fi
unset ASAN_OPTIONS UBSAN_OPTIONS

echo "test: a short run of each fuzz target" >&2
deploy/fuzz.sh "${EVENTBUS_FUZZ_SECONDS:-20}" || status=$?
if [[ $status -ne 0 ]]; then
  echo "test: FAILED: a fuzz target found a crash (above)" >&2
fi
exit $status
