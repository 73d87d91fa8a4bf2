#!/usr/bin/env bash
# Try eventbus on a fresh Debian 12 machine: installs what is needed, builds,
# starts a local Kafka and the sidecar on localhost:50051, publishes one event
# with grpcurl and shows how to call it.
#
# Usage: deploy/quickstart.sh         start (or reuse) Kafka and the sidecar
#        deploy/quickstart.sh stop    stop both
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
KAFKA_DIR="$REPO/build/kafka-broker"
PID_FILE="$REPO/build/sidecar.pid"
LOG_FILE="$REPO/build/sidecar.log"
ADDRESS="localhost:50051"
GRPCURL="$REPO/build/tools/bin/grpcurl"

sidecar_running() { [[ -f "$PID_FILE" ]] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; }

if [[ "${1:-}" == stop ]]; then
  if sidecar_running; then
    kill -TERM "$(cat "$PID_FILE")"
    for _ in $(seq 1 150); do sidecar_running || break; sleep 0.1; done
  fi
  rm -f "$PID_FILE"
  deploy/kafka/kafka.sh stop "$KAFKA_DIR"
  echo "quickstart: stopped"
  exit 0
fi

deploy/install-deps.sh
# The sidecar first, so that the first call does not wait for every test.
deploy/build.sh --target eventbus-sidecar
brokers="$(deploy/kafka/kafka.sh start "$KAFKA_DIR" | tail -n 1)"

if ! sidecar_running; then
  setsid build/server/eventbus-sidecar --kafka.brokers="$brokers" \
    --server.listen=0.0.0.0:50051 >"$LOG_FILE" 2>&1 </dev/null &
  echo $! >"$PID_FILE"
fi
for i in $(seq 1 100); do
  if "$GRPCURL" -plaintext "$ADDRESS" grpc.health.v1.Health/Check 2>/dev/null | grep -q '"SERVING"'; then
    break
  fi
  if ! sidecar_running || [[ $i == 100 ]]; then
    echo "quickstart: the sidecar did not become healthy; its log:" >&2
    tail -n 30 "$LOG_FILE" >&2
    exit 1
  fi
  sleep 0.2
done

echo
echo "eventbus-sidecar is serving on $ADDRESS (Kafka at $brokers, log in build/sidecar.log)."
echo "Publishing one event:"
echo
echo "  $GRPCURL -plaintext -emit-defaults -d '{\"topic\":\"demo\",\"key\":\"order-1\",\"event\":{\"type\":\"com.example.order.created\",\"data\":\"aGVsbG8=\"}}' $ADDRESS eventbus.v1.EventBus/Publish"
"$GRPCURL" -plaintext -emit-defaults -d '{"topic":"demo","key":"order-1","event":{"type":"com.example.order.created","data":"aGVsbG8="}}' \
  "$ADDRESS" eventbus.v1.EventBus/Publish
cat <<MSG

More to try (see README.md, "Calling it with grpcurl"):
  $GRPCURL -plaintext $ADDRESS list
  $GRPCURL -plaintext $ADDRESS describe eventbus.v1.EventBus
  $GRPCURL -plaintext $ADDRESS grpc.health.v1.Health/Check
  deploy/kafka/kafka.sh console-consumer $KAFKA_DIR --topic demo --from-beginning --property print.headers=true --max-messages 1

Stop everything with: deploy/quickstart.sh stop
The CLI, the C++ client, the tests and the benchmark build with: deploy/build.sh
MSG
