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
stop_kafka() { deploy/kafka/kafka.sh stop "$KAFKA_DIR" >/dev/null 2>&1 || true; }
trap stop_kafka EXIT

echo "test: starting the local Kafka" >&2
if ! brokers="$(deploy/kafka/kafka.sh start "$KAFKA_DIR" | tail -n 1)" || [[ -z "$brokers" ]]; then
  echo "test: FAILED: the local Kafka did not start (reason and broker log above)" >&2
  exit 1
fi
echo "test: Kafka at $brokers" >&2
export TEST_KAFKA_BROKERS="$brokers"
export GRPCURL="$REPO/build/tools/bin/grpcurl"

status=0
ctest --test-dir "$REPO/build" --output-on-failure --timeout 600 -j2 "$@" || status=$?
if [[ $status -ne 0 ]]; then
  echo "test: FAILED (ctest exit $status); last lines of the Kafka log:" >&2
  deploy/kafka/kafka.sh logtail "$KAFKA_DIR" 40 >&2 || true
fi
exit $status
