#!/usr/bin/env bash
# Run a throw-away single-node Apache Kafka 4.1.1 (KRaft, broker+controller in one
# JVM) on 127.0.0.1 for local development and integration tests.
#
# Usage:
#   deploy/kafka/kafka.sh start   [DIR]          start (or reuse) a broker; last stdout line = 127.0.0.1:PORT
#   deploy/kafka/kafka.sh stop    [DIR]          SIGTERM, 30 s grace, then SIGKILL
#   deploy/kafka/kafka.sh status  [DIR]          exit 0 + print bootstrap if running, else exit 1
#   deploy/kafka/kafka.sh logtail [DIR] [N]      last N (default 50) lines of DIR/kafka.log
#   deploy/kafka/kafka.sh topics          [DIR] ARGS...   kafka-topics          (--bootstrap-server added)
#   deploy/kafka/kafka.sh consumer-groups [DIR] ARGS...   kafka-consumer-groups (--bootstrap-server added)
#   deploy/kafka/kafka.sh console-producer [DIR] ARGS...  kafka-console-producer (--bootstrap-server added)
#   deploy/kafka/kafka.sh console-consumer [DIR] ARGS...  kafka-console-consumer (--bootstrap-server added)
#   deploy/kafka/kafka.sh fetch                  only fetch the jars into <repo>/build/kafka-lib
#
# DIR defaults to $LOCAL_KAFKA_DIR, else <repo>/build/kafka-broker. Every start formats a
# FRESH DIR/data (all previous topics/messages are gone). Brokers in different DIRs
# are independent and get their own free ports.
#
# Environment:
#   JAVA_HOME                       java = $JAVA_HOME/bin/java if set, else `java` on PATH (17+)
#   LOCAL_KAFKA_DIR              default DIR
#   LOCAL_KAFKA_LIB              jar directory (default <repo>/build/kafka-lib)
#   LOCAL_KAFKA_START_TIMEOUT    seconds to wait for readiness (default 90)
#   LOCAL_KAFKA_HEAP_OPTS        broker heap (default "-Xms256m -Xmx768m")
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=fetch.sh
source "$HERE/fetch.sh"

LIB="${LOCAL_KAFKA_LIB:-$REPO/build/kafka-lib}"
LOG4J2_CONF="$HERE/log4j2.properties"
START_TIMEOUT="${LOCAL_KAFKA_START_TIMEOUT:-90}"
HEAP_OPTS="${LOCAL_KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}"
BIND_RETRIES=3

TOPIC_CLASS=org.apache.kafka.tools.TopicCommand
GROUPS_CLASS=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand
PRODUCER_CLASS=org.apache.kafka.tools.ConsoleProducer
CONSUMER_CLASS=org.apache.kafka.tools.consumer.ConsoleConsumer
STORAGE_CLASS=kafka.tools.StorageTool
BROKER_CLASS=kafka.Kafka

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

# ---------------------------------------------------------------- helpers

# Absolute path of DIR (created when $2 == create).
resolve_dir() {
  local d="${1:-${LOCAL_KAFKA_DIR:-$REPO/build/kafka-broker}}"
  if [[ "${2:-}" == create ]]; then
    mkdir -p "$d"
  fi
  if [[ -d "$d" ]]; then
    (cd "$d" && pwd -P)
  elif [[ "$d" == /* ]]; then
    echo "$d"
  else
    echo "$PWD/$d"
  fi
}

# Prints the broker pid if the broker started from $DIR is alive.
running_pid() {
  local pidf="$DIR/kafka.pid" pid
  [[ -f "$pidf" ]] || return 1
  pid="$(tr -dc '0-9' <"$pidf")"
  [[ -n "$pid" ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  # Guard against pid reuse: must be our broker for this DIR.
  if [[ -r "/proc/$pid/cmdline" ]]; then
    local cmd
    cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline")"
    [[ "$cmd" == *"$BROKER_CLASS"*"$DIR/server.properties"* ]] || return 1
  fi
  echo "$pid"
}

log_line() { # append a kafka.sh message to DIR/kafka.log
  echo "[$(date '+%Y-%m-%d %H:%M:%S')] kafka.sh: $*" >>"$DIR/kafka.log" 2>/dev/null || true
}

# Fail: reason to stderr, then the log tail, exit 1.
fail() {
  echo "kafka.sh: ERROR: $*" >&2
  log_line "ERROR: $*"
  if [[ -s "$DIR/kafka.log" ]]; then
    echo "---- last 50 lines of $DIR/kafka.log ----" >&2
    tail -n 50 "$DIR/kafka.log" >&2 || true
    echo "---- end of $DIR/kafka.log ----" >&2
  else
    echo "(no $DIR/kafka.log yet)" >&2
  fi
  exit 1
}

find_java() {
  local j
  if [[ -n "${JAVA_HOME:-}" ]]; then
    j="$JAVA_HOME/bin/java"
    [[ -x "$j" ]] || { echo "JAVA_HOME is set to '$JAVA_HOME' but '$j' is not an executable java" ; return 1; }
  else
    j="$(command -v java 2>/dev/null)" || { echo "no 'java' on PATH and JAVA_HOME is not set (need Java 17+, e.g. openjdk-17-jdk-headless)"; return 1; }
  fi
  local v major
  v="$("$j" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = //p' | head -n1)"
  major="${v%%.*}"
  if [[ -z "$major" || ! "$major" =~ ^[0-9]+$ ]]; then
    echo "could not determine the Java version of '$j'"; return 1
  fi
  if (( major < 17 )); then
    echo "'$j' is Java $v; Kafka 4.x needs Java 17 or newer"; return 1
  fi
  echo "$j"
}

need_python() {
  command -v python3 >/dev/null 2>&1 || fail "python3 is required (free-port selection, cluster id)"
}

# Two distinct free loopback ports, bound simultaneously by the kernel (port 0).
free_ports() {
  python3 - <<'PY'
import socket
socks = []
for _ in range(2):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
PY
}

# Random Kafka cluster id (base64url of 16 random bytes, like Uuid.randomUuid()).
random_cluster_id() {
  python3 - <<'PY'
import base64, os
while True:
    s = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
    if not s.startswith("-"):
        print(s)
        break
PY
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

classpath() { echo "$LIB/*"; }

write_config() { # write_config BROKER_PORT CONTROLLER_PORT
  local p="$1" c="$2"
  cat >"$DIR/server.properties.tmp" <<EOF
# Generated by deploy/kafka/kafka.sh -- single-node KRaft (broker+controller), loopback only.
process.roles=broker,controller
node.id=1
# Dynamic (KIP-853) quorum: storage is formatted with --standalone.
controller.quorum.bootstrap.servers=127.0.0.1:$c
listeners=PLAINTEXT://127.0.0.1:$p,CONTROLLER://127.0.0.1:$c
advertised.listeners=PLAINTEXT://127.0.0.1:$p,CONTROLLER://127.0.0.1:$c
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DIR/data
num.partitions=3
default.replication.factor=1
auto.create.topics.enable=true
delete.topic.enable=true
offsets.topic.replication.factor=1
# Fewer internal partitions than the default 50: first consumer-group use is much faster.
offsets.topic.num.partitions=5
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=5
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=5
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
EOF
  mv "$DIR/server.properties.tmp" "$DIR/server.properties"
}

# Launch the broker JVM detached (own session), pid -> DIR/kafka.pid.
launch_broker() {
  local java="$1"
  rm -f "$DIR/kafka.pid" "$DIR/kafka.pid.new"
  log_line "starting broker: $java $BROKER_CLASS $DIR/server.properties"
  # shellcheck disable=SC2086,SC2016  # word-split HEAP_OPTS; $$ expands in the child
  (
    cd "$DIR"
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$DIR/kafka.pid.new" \
      "$java" $HEAP_OPTS \
      -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
      -Djava.awt.headless=true \
      -Dlog4j2.configurationFile="$LOG4J2_CONF" \
      -Deventbus.kafka.log.level=INFO \
      -cp "$(classpath)" "$BROKER_CLASS" "$DIR/server.properties" \
      </dev/null >>"$DIR/kafka.log" 2>&1 9>&- &
  )
  local i
  for ((i = 0; i < 100; i++)); do
    if [[ -s "$DIR/kafka.pid.new" ]]; then
      mv "$DIR/kafka.pid.new" "$DIR/kafka.pid"
      return 0
    fi
    sleep 0.05
  done
  return 1
}

kill_pid() { # kill_pid PID GRACE_SECONDS
  local pid="$1" grace="$2" i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < grace * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  echo "kafka.sh: broker pid $pid did not exit within ${grace}s, sending SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
}

lock_dir() {
  exec 9>"$DIR/.kafka.sh.lock"
  flock -w $((START_TIMEOUT + 60)) 9 || { echo "kafka.sh: could not lock $DIR (another kafka.sh busy?)" >&2; exit 1; }
}

# ---------------------------------------------------------------- commands

cmd_start() {
  DIR="$(resolve_dir "${1:-}" create)"
  lock_dir

  local pid
  if pid="$(running_pid)"; then
    if [[ -s "$DIR/bootstrap" ]]; then
      echo "kafka.sh: broker already running from $DIR (pid $pid)" >&2
      cat "$DIR/bootstrap"
      return 0
    fi
    echo "kafka.sh: broker pid $pid in $DIR has no bootstrap file; restarting it" >&2
    kill_pid "$pid" 30
  fi
  rm -f "$DIR/kafka.pid" "$DIR/bootstrap"

  # Fresh log for this run (keep the previous one around for post-mortems).
  if [[ -f "$DIR/kafka.log" ]]; then mv -f "$DIR/kafka.log" "$DIR/kafka.log.1"; fi
  : >"$DIR/kafka.log"
  log_line "start in $DIR"

  local java
  java="$(find_java)" || fail "$java"
  need_python
  command -v setsid >/dev/null 2>&1 || fail "'setsid' (util-linux) is required"

  if ! kafka_fetch_jars "$LIB" 2>>"$DIR/kafka.log"; then
    fail "could not fetch the Kafka jars into $LIB (see the Maven output below; is 'mvn' installed and Maven Central reachable?)"
  fi
  compgen -G "$LIB/kafka_2.13-*.jar" >/dev/null || fail "no kafka_2.13 jar in $LIB"

  local t0 attempt ports bport cport cluster_id
  t0=$(date +%s.%N)
  for ((attempt = 1; attempt <= BIND_RETRIES; attempt++)); do
    ports="$(free_ports)" || fail "could not pick free loopback ports"
    read -r bport cport <<<"$ports"
    write_config "$bport" "$cport"

    rm -rf "$DIR/data"
    mkdir -p "$DIR/data"
    cluster_id="$(random_cluster_id)"
    log_line "formatting $DIR/data (cluster id $cluster_id, broker port $bport, controller port $cport)"
    if ! "$java" -Xmx256m -XX:TieredStopAtLevel=1 \
          -Dlog4j2.configurationFile="$LOG4J2_CONF" -Deventbus.kafka.log.level=WARN \
          -cp "$(classpath)" "$STORAGE_CLASS" format \
          --config "$DIR/server.properties" --cluster-id "$cluster_id" --standalone \
          </dev/null >>"$DIR/kafka.log" 2>&1; then
      fail "formatting the KRaft storage in $DIR/data failed ($STORAGE_CLASS format)"
    fi

    launch_broker "$java" || fail "broker JVM did not start (no pid written)"
    pid="$(cat "$DIR/kafka.pid")"

    local deadline ready=0 died=0
    deadline=$(($(date +%s) + START_TIMEOUT))
    while (($(date +%s) < deadline)); do
      if ! kill -0 "$pid" 2>/dev/null; then
        died=1
        break
      fi
      if grep -q "Kafka Server started" "$DIR/kafka.log" && port_open "$bport"; then
        ready=1
        break
      fi
      sleep 0.2
    done

    if ((ready)); then
      break
    fi
    if ((died)); then
      rm -f "$DIR/kafka.pid"
      if grep -qE "BindException|Address already in use" "$DIR/kafka.log" && ((attempt < BIND_RETRIES)); then
        log_line "port collision (attempt $attempt), retrying with new ports"
        echo "kafka.sh: port collision, retrying with new ports" >&2
        continue
      fi
      fail "broker process (pid $pid) exited during startup"
    fi
    kill_pid "$pid" 10
    rm -f "$DIR/kafka.pid"
    fail "broker not ready within ${START_TIMEOUT}s (no 'Kafka Server started' in the log or port $bport closed); it was stopped"
  done

  echo "127.0.0.1:$bport" >"$DIR/bootstrap.tmp"
  mv "$DIR/bootstrap.tmp" "$DIR/bootstrap"
  local took
  took="$(python3 -c "import sys,time; print('%.1f' % (time.time() - float(sys.argv[1])))" "$t0")"
  log_line "broker ready at 127.0.0.1:$bport (pid $pid) after ${took}s"
  echo "kafka.sh: broker ready in ${took}s (pid $pid, dir $DIR, controller 127.0.0.1:$cport)" >&2
  echo "127.0.0.1:$bport"
}

cmd_stop() {
  DIR="$(resolve_dir "${1:-}")"
  if [[ ! -d "$DIR" ]]; then
    echo "kafka.sh: not running ($DIR does not exist)" >&2
    return 0
  fi
  lock_dir
  local pid
  if pid="$(running_pid)"; then
    echo "kafka.sh: stopping broker pid $pid ($DIR)" >&2
    log_line "stop requested (pid $pid)"
    kill_pid "$pid" 30
    log_line "stopped"
  else
    echo "kafka.sh: not running ($DIR)" >&2
  fi
  rm -f "$DIR/kafka.pid" "$DIR/bootstrap"
}

cmd_status() {
  DIR="$(resolve_dir "${1:-}")"
  local pid
  if [[ -d "$DIR" ]] && pid="$(running_pid)" && [[ -s "$DIR/bootstrap" ]]; then
    cat "$DIR/bootstrap"
    return 0
  fi
  echo "kafka.sh: not running ($DIR)" >&2
  return 1
}

cmd_logtail() {
  local d="" n=50
  if (($# >= 2)); then
    d="$1" n="$2"
  elif (($# == 1)); then
    if [[ "$1" =~ ^[0-9]+$ && ! -d "$1" ]]; then n="$1"; else d="$1"; fi
  fi
  [[ "$n" =~ ^[0-9]+$ ]] || { echo "kafka.sh: N must be a number, got '$n'" >&2; exit 2; }
  DIR="$(resolve_dir "$d")"
  [[ -f "$DIR/kafka.log" ]] || { echo "kafka.sh: no $DIR/kafka.log" >&2; exit 1; }
  tail -n "$n" "$DIR/kafka.log"
}

# run_tool CLASS [DIR] ARGS...   (DIR = first arg when it does not start with '-')
run_tool() {
  local class="$1"
  shift
  local d=""
  if (($# > 0)) && [[ "$1" != -* ]]; then
    d="$1"
    shift
  fi
  DIR="$(resolve_dir "$d")"
  local bootstrap java
  bootstrap="$(cmd_status "$DIR" 2>/dev/null)" || { echo "kafka.sh: no broker running from $DIR (run: $0 start${d:+ $d})" >&2; exit 1; }
  java="$(find_java)" || { echo "kafka.sh: $java" >&2; exit 1; }
  exec "$java" -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
    -Dlog4j2.configurationFile="$LOG4J2_CONF" -Deventbus.kafka.log.level=WARN \
    -cp "$(classpath)" "$class" --bootstrap-server "$bootstrap" "$@"
}

main() {
  (($# >= 1)) || usage
  local cmd="$1"
  shift
  case "$cmd" in
    start) (($# <= 1)) || usage; cmd_start "$@" ;;
    stop) (($# <= 1)) || usage; cmd_stop "$@" ;;
    status) (($# <= 1)) || usage; cmd_status "$@" ;;
    logtail) (($# <= 2)) || usage; cmd_logtail "$@" ;;
    topics) run_tool "$TOPIC_CLASS" "$@" ;;
    consumer-groups) run_tool "$GROUPS_CLASS" "$@" ;;
    console-producer) run_tool "$PRODUCER_CLASS" "$@" ;;
    console-consumer) run_tool "$CONSUMER_CLASS" "$@" ;;
    fetch) kafka_fetch_jars "$LIB"; echo "$LIB" ;;
    -h | --help | help) usage ;;
    *) echo "kafka.sh: unknown command '$cmd'" >&2; usage ;;
  esac
}

main "$@"
