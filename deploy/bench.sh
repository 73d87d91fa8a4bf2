#!/usr/bin/env bash
# The eventbus benchmark on a fresh Debian 12 machine: installs what is
# needed, builds, starts a throw-away local Kafka in build/kafka-bench, runs
# build/tests/bench/eventbus-bench against it, and stops Kafka. Prints
# tables: publish throughput (a plain librdkafka producer next to
# PublishStream with 100 and 1 events per message and unary Publish through
# the eventbus-sidecar process, and the same gRPC calls against a server
# that answers at once: the gRPC floor), subscribe throughput (a plain
# librdkafka group consumer next to Subscribe with acks, and Subscribe
# against the floor, which feeds the same deliveries), publish-ack and
# end-to-end latency at 1,000 and 10,000 events/s offered open loop, the CPU
# of the sidecar, the broker and a direct producer at fixed rates of 100,
# 1,000 and 10,000 events/s, and the sidecar process's memory and CPU per
# 1,000 events.
#
# Usage: deploy/bench.sh [eventbus-bench arguments...]
#   deploy/bench.sh                          default sizes (200000 events of 100 B, 2 runs)
#   deploy/bench.sh --smoke                  a few seconds, checks everything works
#   deploy/bench.sh --events 50000 --runs 3 --json build/bench.json
#   deploy/bench.sh --only subscribe         one group: publish, subscribe, latency, rates or resources
# Exits with eventbus-bench's status: non-zero when an event failed.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

deploy/install-deps.sh
deploy/build.sh

KAFKA_DIR="$REPO/build/kafka-bench"
stop_kafka() { deploy/kafka/kafka.sh stop "$KAFKA_DIR" >/dev/null 2>&1 || true; }
trap stop_kafka EXIT

echo "bench: starting the local Kafka" >&2
if ! brokers="$(deploy/kafka/kafka.sh start "$KAFKA_DIR" | tail -n 1)" || [[ -z "$brokers" ]]; then
  echo "bench: FAILED: the local Kafka did not start (reason and broker log above)" >&2
  exit 1
fi
echo "bench: Kafka at $brokers" >&2

status=0
"$REPO/build/tests/bench/eventbus-bench" --brokers "$brokers" \
  --broker-pid "$(tr -dc '0-9' <"$KAFKA_DIR/kafka.pid")" "$@" || status=$?
if [[ $status -ne 0 ]]; then
  echo "bench: FAILED (eventbus-bench exit $status); last lines of the Kafka log:" >&2
  deploy/kafka/kafka.sh logtail "$KAFKA_DIR" 40 >&2 || true
fi
exit $status
