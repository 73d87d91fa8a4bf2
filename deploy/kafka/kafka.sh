#!/usr/bin/env bash
# Run a throw-away single-node Apache Kafka 4.1.1 (KRaft, broker+controller in one
# JVM) on 127.0.0.1 for local development and integration tests, or a three-node
# KRaft cluster (three broker+controller JVMs) on 127.0.0.1 for fault tests.
#
# Usage:
#   deploy/kafka/kafka.sh start   [DIR]          start (or reuse) a broker; last stdout line = 127.0.0.1:PORT
#   deploy/kafka/kafka.sh stop    [DIR]          SIGTERM, 30 s grace, then SIGKILL (cluster DIR: all nodes at
#                                                once; SIGKILL 10 s after fewer than 2 nodes remain)
#   deploy/kafka/kafka.sh status  [DIR]          exit 0 + print bootstrap if running, else exit 1
#                                                (cluster DIR: exit 0 if >= 1 node runs; node states on stderr)
#   deploy/kafka/kafka.sh logtail [DIR] [N]      last N (default 50) lines of DIR/kafka.log
#                                                (cluster DIR: of each DIR/nodeK/kafka.log, with a header line)
#   deploy/kafka/kafka.sh topics          [DIR] ARGS...   kafka-topics          (--bootstrap-server added)
#   deploy/kafka/kafka.sh consumer-groups [DIR] ARGS...   kafka-consumer-groups (--bootstrap-server added)
#   deploy/kafka/kafka.sh console-producer [DIR] ARGS...  kafka-console-producer (--bootstrap-server added)
#   deploy/kafka/kafka.sh console-consumer [DIR] ARGS...  kafka-console-consumer (--bootstrap-server added)
#   deploy/kafka/kafka.sh fetch                  only fetch the jars into <repo>/build/kafka-lib
#
# With LOCAL_KAFKA_SECURE=1, start adds a SASL_SSL listener (address in DIR/bootstrap-sasl-ssl;
# CA certificate DIR/tls/ca.crt; SCRAM-SHA-512 users admin/admin-secret, a super user,
# app/app-secret and nobody/nobody-secret) authorized by ACLs; the PLAINTEXT listener it prints stays open for tooling,
# as a super user.
#
# Three-node cluster (node ids 1,2,3, each broker+controller, static quorum of all three):
#   deploy/kafka/kafka.sh start-cluster [DIR]    start (or reuse) a cluster in DIR/node1..node3; last stdout
#                                                line = 127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3 (also DIR/bootstrap)
#   deploy/kafka/kafka.sh node-stop   [DIR] N    SIGTERM node N (controlled shutdown), 30 s grace, then SIGKILL
#   deploy/kafka/kafka.sh node-kill   [DIR] N    SIGKILL node N and wait until the process is gone
#   deploy/kafka/kafka.sh node-pause  [DIR] N    SIGSTOP node N (a hung broker: process and sockets stay)
#   deploy/kafka/kafka.sh node-resume [DIR] N    SIGCONT node N
#   deploy/kafka/kafka.sh node-start  [DIR] N    restart a stopped/killed node N: same data, same ports;
#                                                returns when it logged "started" again and its port is open
#   deploy/kafka/kafka.sh node-pid    [DIR] N    print node N's JVM pid (exit 1 if it is not running)
#   deploy/kafka/kafka.sh node-port   [DIR] N    print node N's broker port (also while it is down)
# The node-* commands print one line to stderr and append a timestamped line to
# DIR/nodeN/kafka.log; they exit 1 (with a reason) when the node cannot be controlled.
# Tool commands (topics, ...) on a cluster DIR bootstrap from the nodes that run and are not
# paused (a SIGSTOPped node would stall them until their API timeout).
#
# DIR defaults to $LOCAL_KAFKA_DIR, else <repo>/build/kafka-broker. Every start / start-cluster
# formats FRESH storage (all previous topics/messages are gone); node-start keeps it. Brokers
# and clusters in different DIRs are independent and get their own free ports. A DIR holds
# either a single broker or a cluster: switching kinds wipes the other kind's files, and is
# refused while the other kind is running.
#
# Environment:
#   JAVA_HOME                       java = $JAVA_HOME/bin/java if set, else `java` on PATH (17+)
#   LOCAL_KAFKA_DIR              default DIR
#   LOCAL_KAFKA_LIB              jar directory (default <repo>/build/kafka-lib)
#   LOCAL_KAFKA_START_TIMEOUT    seconds to wait for readiness (default 90; start, start-cluster, node-start)
#   LOCAL_KAFKA_HEAP_OPTS        single-node broker heap (default "-Xms256m -Xmx768m")
#   LOCAL_KAFKA_CLUSTER_HEAP_OPTS  heap of each cluster node (default "-Xms128m -Xmx384m")
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=fetch.sh
source "$HERE/fetch.sh"

LIB="${LOCAL_KAFKA_LIB:-$REPO/build/kafka-lib}"
LOG4J2_CONF="$HERE/log4j2.properties"
START_TIMEOUT="${LOCAL_KAFKA_START_TIMEOUT:-90}"
HEAP_OPTS="${LOCAL_KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}"
CLUSTER_HEAP_OPTS="${LOCAL_KAFKA_CLUSTER_HEAP_OPTS:--Xms128m -Xmx384m}"
BIND_RETRIES=3
STOP_GRACE=30   # seconds between SIGTERM and SIGKILL
NODES=3         # cluster size (node ids 1..NODES, DIR/node1..DIR/nodeNODES)

TOPIC_CLASS=org.apache.kafka.tools.TopicCommand
GROUPS_CLASS=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand
PRODUCER_CLASS=org.apache.kafka.tools.ConsoleProducer
CONSUMER_CLASS=org.apache.kafka.tools.consumer.ConsoleConsumer
STORAGE_CLASS=kafka.tools.StorageTool
# Secured mode (LOCAL_KAFKA_SECURE=1 with start): a SASL_SSL listener, SCRAM
# users and ACLs; see write_config.
SECURE="${LOCAL_KAFKA_SECURE:-0}"
SECURE_STORE_PASSWORD=eventbus-test-store
# SCRAM-SHA-512 users made when the storage is formatted: admin is a super
# user; app and nobody get what a test grants them.
SECURE_USERS=("admin:admin-secret" "app:app-secret" "nobody:nobody-secret")
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

# Single-letter process state from /proc/PID/stat (R, S, D, T = stopped, Z = zombie, ...).
pid_state() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  echo "${stat:0:1}"
}

# True while PID exists and is not a zombie. A killed broker is re-parented to pid 1, which
# may reap it only seconds later; its sockets are closed already, so a zombie counts as gone.
# A SIGSTOPped process (state T) counts as alive.
pid_alive() {
  kill -0 "$1" 2>/dev/null || return 1
  [[ "$(pid_state "$1" 2>/dev/null || true)" != Z ]]
}

# Prints the broker pid if the broker started from $DIR is alive (also when SIGSTOPped).
# For a cluster node, DIR is the node's directory (DIR/nodeN).
running_pid() {
  local pidf="$DIR/kafka.pid" pid
  [[ -f "$pidf" ]] || return 1
  pid="$(tr -dc '0-9' <"$pidf")"
  [[ -n "$pid" ]] || return 1
  pid_alive "$pid" || return 1
  # Guard against pid reuse: must be our broker for this DIR.
  if [[ -r "/proc/$pid/cmdline" ]]; then
    local cmd
    cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline")"
    [[ "$cmd" == *"$BROKER_CLASS"*"$DIR/server.properties"* ]] || return 1
  fi
  echo "$pid"
}

log_line() { # append a kafka.sh message to DIR/kafka.log (same timestamp format as the broker's)
  echo "[$(date '+%Y-%m-%d %H:%M:%S,%3N')] kafka.sh: $*" >>"$DIR/kafka.log" 2>/dev/null || true
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

# N (default 2) distinct free loopback ports, bound simultaneously by the kernel (port 0).
free_ports() {
  python3 - "${1:-2}" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
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

write_config() { # write_config BROKER_PORT CONTROLLER_PORT [SASL_SSL_PORT]
  local p="$1" c="$2" s="${3:-}"
  local listeners="PLAINTEXT://127.0.0.1:$p,CONTROLLER://127.0.0.1:$c"
  local protocols="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
  if [[ -n "$s" ]]; then
    listeners+=",SASL_SSL://127.0.0.1:$s"
    protocols+=",SASL_SSL:SASL_SSL"
  fi
  cat >"$DIR/server.properties.tmp" <<EOF
# Generated by deploy/kafka/kafka.sh -- single-node KRaft (broker+controller), loopback only.
process.roles=broker,controller
node.id=1
# Dynamic (KIP-853) quorum: storage is formatted with --standalone.
controller.quorum.bootstrap.servers=127.0.0.1:$c
listeners=$listeners
advertised.listeners=$listeners
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols
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
  if [[ -n "$s" ]]; then
    cat >>"$DIR/server.properties.tmp" <<EOF
# Secured mode (LOCAL_KAFKA_SECURE=1): clients on SASL_SSL (SCRAM-SHA-512 over
# TLS) are authorized by ACLs (KRaft's StandardAuthorizer); the PLAINTEXT and
# controller listeners stay for the broker itself and for test tooling, whose
# principal ANONYMOUS is a super user, like admin.
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PKCS12
ssl.keystore.location=$DIR/tls/broker.p12
ssl.keystore.password=$SECURE_STORE_PASSWORD
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:ANONYMOUS;User:admin
allow.everyone.if.no.acl.found=false
EOF
  fi
  mv "$DIR/server.properties.tmp" "$DIR/server.properties"
}

# Secured mode: a CA and the broker's certificate (SANs localhost and
# 127.0.0.1) made with openssl, the broker's PKCS12 keystore checked with
# keytool; clients trust DIR/tls/ca.crt.
write_secure_material() {
  local tls="$DIR/tls"
  rm -rf "$tls"
  mkdir -p "$tls"
  command -v openssl >/dev/null 2>&1 || fail "secured mode needs openssl"
  {
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=eventbus-test-kafka-ca" \
      -keyout "$tls/ca.key" -out "$tls/ca.crt" &&
      openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
        -keyout "$tls/broker.key" -out "$tls/broker.csr" &&
      printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$tls/san.ext" &&
      openssl x509 -req -in "$tls/broker.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" \
        -CAcreateserial -days 30 -extfile "$tls/san.ext" -out "$tls/broker.crt" &&
      openssl pkcs12 -export -in "$tls/broker.crt" -inkey "$tls/broker.key" \
        -certfile "$tls/ca.crt" -name broker -passout "pass:$SECURE_STORE_PASSWORD" \
        -out "$tls/broker.p12"
  } >>"$DIR/kafka.log" 2>&1 || fail "making the secured mode's certificates with openssl failed"
  local java keytool
  java="$(find_java)" || fail "$java"
  keytool="$(dirname "$(readlink -f "$(command -v "$java")")")/keytool"
  [[ -x "$keytool" ]] || keytool="$(command -v keytool || true)"
  [[ -n "$keytool" ]] || fail "secured mode needs keytool (it comes with the JDK)"
  "$keytool" -list -storetype PKCS12 -keystore "$tls/broker.p12" \
    -storepass "$SECURE_STORE_PASSWORD" >>"$DIR/kafka.log" 2>&1 ||
    fail "keytool cannot read the broker keystore $tls/broker.p12"
}

# Launch the broker JVM detached (own session), pid -> DIR/kafka.pid.
# launch_broker JAVA [HEAP_OPTS]
launch_broker() {
  local java="$1" heap="${2:-$HEAP_OPTS}"
  rm -f "$DIR/kafka.pid" "$DIR/kafka.pid.new"
  log_line "starting broker: $java $BROKER_CLASS $DIR/server.properties"
  # shellcheck disable=SC2086,SC2016  # word-split the heap options; $$ expands in the child
  (
    cd "$DIR"
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$DIR/kafka.pid.new" \
      "$java" $heap \
      -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
      -Djava.awt.headless=true \
      -Dlog4j2.configurationFile="$LOG4J2_CONF" \
      -Deventbus.kafka.log.level=INFO \
      -cp "$(classpath)" "$BROKER_CLASS" "$DIR/server.properties" \
      </dev/null >>"$DIR/kafka.log" 2>&1 8>&- 9>&- &
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
  kill_pids "$2" "$1"
}

# kill_pids GRACE_SECONDS PID...: SIGTERM all (plus SIGCONT, so a SIGSTOPped JVM acts on it),
# wait up to GRACE seconds for all of them, SIGKILL the rest, wait up to 5 s more.
kill_pids() {
  local grace="$1" pid i left
  shift
  for pid in "$@"; do
    kill -TERM "$pid" 2>/dev/null || true
    kill -CONT "$pid" 2>/dev/null || true
  done
  for ((i = 0; i <= grace * 10; i++)); do
    left=()
    for pid in "$@"; do
      if pid_alive "$pid"; then left+=("$pid"); fi
    done
    ((${#left[@]})) || return 0
    ((i == grace * 10)) || sleep 0.1
  done
  echo "kafka.sh: broker pid(s) ${left[*]} did not exit within ${grace}s, sending SIGKILL" >&2
  kill_pids_now "${left[@]}" || echo "kafka.sh: WARNING: pid(s) ${left[*]} survived SIGKILL" >&2
}

# kill_pids_now PID...: SIGKILL, wait up to 5 s until they are gone. rc 1 if one survived.
kill_pids_now() {
  local pid i alive
  for pid in "$@"; do kill -KILL "$pid" 2>/dev/null || true; done
  for ((i = 0; i < 50; i++)); do
    alive=0
    for pid in "$@"; do
      if pid_alive "$pid"; then alive=1; fi
    done
    ((alive)) || return 0
    sleep 0.1
  done
  return 1
}

lock_dir() { # lock_dir [shared]: exclusive (default) or shared lock on DIR, fd 9
  local mode=-x
  if [[ "${1:-}" == shared ]]; then mode=-s; fi
  exec 9>"$DIR/.kafka.sh.lock"
  flock "$mode" -w $((START_TIMEOUT + 60)) 9 || { echo "kafka.sh: could not lock $DIR (another kafka.sh busy?)" >&2; exit 1; }
}

now_ms() { local t="${EPOCHREALTIME//[.,]/}"; echo $((t / 1000)); }
since() { # since T0_MS -> "1.2" (seconds)
  local d=$(($(now_ms) - $1))
  echo "$((d / 1000)).$((d % 1000 / 100))"
}

# Size of DIR/kafka.log in bytes (0 if missing): remember it before a (re)start, then look
# only at the lines written after it.
log_size() { stat -c %s "$DIR/kafka.log" 2>/dev/null || echo 0; }
log_since_has() { # log_since_has OFFSET EREGEX
  grep -qE "$2" < <(tail -c "+$(($1 + 1))" "$DIR/kafka.log" 2>/dev/null)
}

# ---------------------------------------------------------------- cluster helpers
# A cluster DIR (CDIR) holds the marker file CDIR/cluster, CDIR/bootstrap and
# CDIR/node1..node$NODES, each laid out like a single-node DIR (server.properties, data/,
# kafka.log, kafka.pid). Functions acting on one node set DIR=CDIR/nodeN first, so
# running_pid, log_line, fail and launch_broker work per node unchanged.

is_cluster_dir() { [[ -f "$1/cluster" ]]; }

use_node() { DIR="$CDIR/node$1"; }

node_port() { # node_port N: broker port of node N (from its server.properties)
  sed -n 's|^listeners=PLAINTEXT://127\.0\.0\.1:\([0-9]*\),.*|\1|p;T;q' "$CDIR/node$1/server.properties" 2>/dev/null
}
node_cport() { # node_cport N: controller port of node N
  sed -n 's|^listeners=.*,CONTROLLER://127\.0\.0\.1:\([0-9]*\)$|\1|p;T;q' "$CDIR/node$1/server.properties" 2>/dev/null
}

# Prints "N PID" for each running (or SIGSTOPped) node. Leaves DIR unchanged.
cluster_running() {
  local n pid saved="$DIR"
  for ((n = 1; n <= NODES; n++)); do
    use_node "$n"
    if pid="$(running_pid)"; then echo "$n $pid"; fi
  done
  DIR="$saved"
}

# Fail for the whole cluster: reason to stderr and every node's log, then every node's log tail.
cluster_fail() {
  echo "kafka.sh: ERROR: $*" >&2
  local n
  for ((n = 1; n <= NODES; n++)); do
    use_node "$n"
    log_line "ERROR: $*"
    if [[ -s "$DIR/kafka.log" ]]; then
      echo "---- node $n: last 50 lines of $DIR/kafka.log ----" >&2
      tail -n 50 "$DIR/kafka.log" >&2 || true
      echo "---- end of $DIR/kafka.log ----" >&2
    else
      echo "(no $DIR/kafka.log yet)" >&2
    fi
  done
  exit 1
}

# write_node_config N BROKER_PORT CONTROLLER_PORT VOTERS -> DIR/server.properties (DIR = node dir)
write_node_config() {
  local n="$1" p="$2" c="$3" voters="$4"
  cat >"$DIR/server.properties.tmp" <<EOC
# Generated by deploy/kafka/kafka.sh -- node $n of a $NODES-node KRaft cluster on loopback,
# every node broker+controller.
process.roles=broker,controller
node.id=$n
# Static controller quorum of all nodes (kraft.version 0; storage formatted with --cluster-id
# only). Each node keeps its ports for its lifetime (node-start reuses them), which is all a
# static quorum needs; a KIP-853 dynamic quorum would add directory ids to keep in sync and
# gains nothing for fault tests.
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$p,CONTROLLER://127.0.0.1:$c
advertised.listeners=PLAINTEXT://127.0.0.1:$p,CONTROLLER://127.0.0.1:$c
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DIR/data
num.partitions=3
# Every topic on all three nodes; acks=all needs 2 in-sync copies: one node may fail
# without data loss or unavailability, two failing makes acks=all produce fail.
default.replication.factor=3
min.insync.replicas=2
auto.create.topics.enable=true
delete.topic.enable=true
# Never elect an out-of-sync replica (the default, explicit because fault tests rely on it).
unclean.leader.election.enable=false
# Leadership moves only because of a fault or a test's own request, never by a background
# preferred-leader rebalance (default true / every 300 s) in the middle of a test.
auto.leader.rebalance.enable=false
offsets.topic.replication.factor=3
# Fewer internal partitions than the default 50: first consumer-group use is much faster.
offsets.topic.num.partitions=5
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
transaction.state.log.num.partitions=5
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
share.coordinator.state.topic.num.partitions=5
group.initial.rebalance.delay.ms=0
# Failure detection. A broker heartbeats to the active controller every 500 ms (default 2000);
# the controller fences a broker it has not heard from for 3 s (default 9000), which removes
# it from every ISR and moves its partition leaderships. A SIGKILLed or SIGSTOPped node is
# therefore out of the ISRs ~3 s after the fault (plus a KRaft election, default
# controller.quorum.fetch.timeout.ms=2000 + election.timeout.ms=1000, when the node was the
# active controller). 6 missed heartbeats before fencing tolerate GC/CPU stalls on a busy
# 2-core machine.
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=3000
# A follower that still heartbeats but stops fetching leaves the ISR after 10 s (default 30 s).
replica.lag.time.max.ms=10000
# Three JVMs share the machine: fewer request threads than the defaults (3 network / 8 io).
num.network.threads=2
num.io.threads=2
EOC
  mv "$DIR/server.properties.tmp" "$DIR/server.properties"
}

# ---------------------------------------------------------------- commands

cmd_start() {
  DIR="$(resolve_dir "${1:-}" create)"
  lock_dir

  local pid
  if is_cluster_dir "$DIR"; then
    CDIR="$DIR"
    if [[ -n "$(cluster_running)" ]]; then
      echo "kafka.sh: $DIR holds a running $NODES-node cluster; stop it first ($0 stop $DIR)" >&2
      exit 1
    fi
    local n
    for ((n = 1; n <= NODES; n++)); do rm -rf "${CDIR:?}/node$n"; done
    rm -f "$CDIR/cluster" "$CDIR/bootstrap"
    DIR="$CDIR"
  fi
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

  local t0 attempt ports bport cport sport="" cluster_id scram=()
  t0=$(date +%s.%N)
  if [[ "$SECURE" == 1 ]]; then
    write_secure_material
    local user
    for user in "${SECURE_USERS[@]}"; do
      scram+=(--add-scram "SCRAM-SHA-512=[name=${user%%:*},password=${user#*:}]")
    done
  fi
  for ((attempt = 1; attempt <= BIND_RETRIES; attempt++)); do
    ports="$(free_ports 3)" || fail "could not pick free loopback ports"
    read -r bport cport sport <<<"$ports"
    [[ "$SECURE" == 1 ]] || sport=""
    write_config "$bport" "$cport" "$sport"

    rm -rf "$DIR/data"
    mkdir -p "$DIR/data"
    cluster_id="$(random_cluster_id)"
    log_line "formatting $DIR/data (cluster id $cluster_id, broker port $bport, controller port $cport)"
    if ! "$java" -Xmx256m -XX:TieredStopAtLevel=1 \
          -Dlog4j2.configurationFile="$LOG4J2_CONF" -Deventbus.kafka.log.level=WARN \
          -cp "$(classpath)" "$STORAGE_CLASS" format \
          --config "$DIR/server.properties" --cluster-id "$cluster_id" --standalone \
          "${scram[@]}" </dev/null >>"$DIR/kafka.log" 2>&1; then
      fail "formatting the KRaft storage in $DIR/data failed ($STORAGE_CLASS format)"
    fi

    launch_broker "$java" || fail "broker JVM did not start (no pid written)"
    pid="$(cat "$DIR/kafka.pid")"

    local deadline ready=0 died=0
    deadline=$(($(date +%s) + START_TIMEOUT))
    while (($(date +%s) < deadline)); do
      if ! pid_alive "$pid"; then
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

  rm -f "$DIR/bootstrap-sasl-ssl"
  if [[ -n "$sport" ]]; then
    until port_open "$sport"; do sleep 0.2; done
    echo "127.0.0.1:$sport" >"$DIR/bootstrap-sasl-ssl"
    log_line "SASL_SSL listener at 127.0.0.1:$sport (CA $DIR/tls/ca.crt, users: ${SECURE_USERS[*]%%:*})"
  fi
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
  if is_cluster_dir "$DIR"; then
    cluster_stop
    return 0
  fi
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
  if is_cluster_dir "$DIR"; then
    cluster_status
    return
  fi
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
  if is_cluster_dir "$DIR"; then
    CDIR="$DIR"
    local k found=0
    for ((k = 1; k <= NODES; k++)); do
      use_node "$k"
      echo "==== node $k: $DIR/kafka.log (last $n lines) ===="
      if [[ -f "$DIR/kafka.log" ]]; then
        found=1
        tail -n "$n" "$DIR/kafka.log"
      else
        echo "(no $DIR/kafka.log)"
      fi
    done
    ((found)) || exit 1
    return 0
  fi
  [[ -f "$DIR/kafka.log" ]] || { echo "kafka.sh: no $DIR/kafka.log" >&2; exit 1; }
  tail -n "$n" "$DIR/kafka.log"
}

# ---------------------------------------------------------------- cluster commands

cmd_start_cluster() {
  CDIR="$(resolve_dir "${1:-}" create)"
  DIR="$CDIR"
  lock_dir

  local pid n line
  if pid="$(running_pid)"; then
    echo "kafka.sh: a single-node broker (pid $pid) is running from $CDIR; stop it first ($0 stop $CDIR)" >&2
    exit 1
  fi
  if is_cluster_dir "$CDIR"; then
    local -a run_pids=()
    local paused=0
    while read -r n pid; do
      [[ -n "$pid" ]] || continue
      run_pids+=("$pid")
      if [[ "$(pid_state "$pid")" == T ]]; then paused=1; fi
    done <<<"$(cluster_running)"
    if ((${#run_pids[@]} == NODES && !paused)) && [[ -s "$CDIR/bootstrap" ]]; then
      echo "kafka.sh: cluster already running from $CDIR (pids ${run_pids[*]})" >&2
      cat "$CDIR/bootstrap"
      return 0
    fi
    if ((${#run_pids[@]})); then
      echo "kafka.sh: cluster in $CDIR is not intact (${#run_pids[@]} of $NODES nodes running, paused: $paused); killing it and starting a fresh one" >&2
      kill_pids_now "${run_pids[@]}" || true
    fi
  fi

  # DIR now holds a cluster: drop single-node leftovers, fresh per-node logs (previous one kept
  # as kafka.log.1 for post-mortems).
  rm -rf "$CDIR/data"
  rm -f "$CDIR/bootstrap" "$CDIR/kafka.pid" "$CDIR/kafka.pid.new" "$CDIR/server.properties" \
    "$CDIR/kafka.log" "$CDIR/kafka.log.1"
  echo "nodes=$NODES" >"$CDIR/cluster"
  for ((n = 1; n <= NODES; n++)); do
    use_node "$n"
    mkdir -p "$DIR"
    rm -f "$DIR/kafka.pid" "$DIR/kafka.pid.new"
    if [[ -f "$DIR/kafka.log" ]]; then mv -f "$DIR/kafka.log" "$DIR/kafka.log.1"; fi
    : >"$DIR/kafka.log"
    log_line "start-cluster in $CDIR (node $n of $NODES)"
  done

  local java
  java="$(find_java)" || cluster_fail "$java"
  command -v python3 >/dev/null 2>&1 || cluster_fail "python3 is required (free-port selection, cluster id)"
  command -v setsid >/dev/null 2>&1 || cluster_fail "'setsid' (util-linux) is required"
  if ! kafka_fetch_jars "$LIB" 2>>"$CDIR/node1/kafka.log"; then
    cluster_fail "could not fetch the Kafka jars into $LIB (see the Maven output in node 1's log; is 'mvn' installed and Maven Central reachable?)"
  fi
  compgen -G "$LIB/kafka_2.13-*.jar" >/dev/null || cluster_fail "no kafka_2.13 jar in $LIB"

  local t0 attempt cluster_id voters bad deadline nready died notready bind
  local -a ports=() bport=() cport=() fpid=() npid=() noff=() ready=()
  t0="$(now_ms)"
  for ((attempt = 1; attempt <= BIND_RETRIES; attempt++)); do
    line="$(free_ports $((2 * NODES)))" || cluster_fail "could not pick free loopback ports"
    read -r -a ports <<<"$line"
    voters=""
    for ((n = 1; n <= NODES; n++)); do
      bport[n]="${ports[2 * n - 2]}"
      cport[n]="${ports[2 * n - 1]}"
      voters+="${voters:+,}$n@127.0.0.1:${cport[n]}"
    done

    # Format all storages with the same cluster id, in parallel (one short JVM each).
    cluster_id="$(random_cluster_id)"
    for ((n = 1; n <= NODES; n++)); do
      use_node "$n"
      write_node_config "$n" "${bport[n]}" "${cport[n]}" "$voters"
      rm -rf "$DIR/data"
      mkdir -p "$DIR/data"
      log_line "formatting $DIR/data (cluster id $cluster_id, node $n, broker port ${bport[n]}, controller port ${cport[n]}, voters $voters)"
      "$java" -Xmx256m -XX:TieredStopAtLevel=1 \
        -Dlog4j2.configurationFile="$LOG4J2_CONF" -Deventbus.kafka.log.level=WARN \
        -cp "$(classpath)" "$STORAGE_CLASS" format \
        --config "$DIR/server.properties" --cluster-id "$cluster_id" \
        </dev/null >>"$DIR/kafka.log" 2>&1 &
      fpid[n]=$!
    done
    bad=""
    for ((n = 1; n <= NODES; n++)); do
      wait "${fpid[n]}" || bad+=" $n"
    done
    [[ -z "$bad" ]] || cluster_fail "formatting the KRaft storage failed on node(s)$bad ($STORAGE_CLASS format)"

    # Launch all nodes at once: a node only finishes starting once a quorum (2 of 3) is up.
    npid=()
    for ((n = 1; n <= NODES; n++)); do
      use_node "$n"
      noff[n]="$(log_size)"
      ready[n]=0
      if ! launch_broker "$java" "$CLUSTER_HEAP_OPTS"; then
        ((${#npid[@]} == 0)) || kill_pids_now "${npid[@]}" || true
        cluster_fail "node $n: broker JVM did not start (no pid written)"
      fi
      npid[n]="$(cat "$DIR/kafka.pid")"
    done

    deadline=$(($(date +%s) + START_TIMEOUT))
    died=""
    nready=0
    while (($(date +%s) < deadline)); do
      nready=0
      for ((n = 1; n <= NODES; n++)); do
        if ! pid_alive "${npid[n]}"; then
          died+=" $n"
          continue
        fi
        use_node "$n"
        if ((ready[n] == 0)) && log_since_has "${noff[n]}" "Kafka Server started" && port_open "${bport[n]}"; then
          ready[n]=1
          log_line "node $n up (pid ${npid[n]}, 127.0.0.1:${bport[n]}) after $(since "$t0")s"
        fi
        ((nready += ready[n])) || true
      done
      if [[ -n "$died" ]] || ((nready == NODES)); then break; fi
      sleep 0.2
    done
    if [[ -z "$died" ]] && ((nready == NODES)); then break; fi

    # Not ready: kill what still runs (storage is reformatted next time anyway).
    kill_pids_now "${npid[@]}" || true
    for ((n = 1; n <= NODES; n++)); do rm -f "$CDIR/node$n/kafka.pid"; done
    if [[ -n "$died" ]]; then
      bind=0
      for n in $died; do
        use_node "$n"
        if log_since_has "${noff[n]}" "BindException|Address already in use"; then bind=1; fi
      done
      if ((bind && attempt < BIND_RETRIES)); then
        for ((n = 1; n <= NODES; n++)); do
          use_node "$n"
          log_line "port collision on node(s)$died (attempt $attempt), retrying all nodes with new ports"
        done
        echo "kafka.sh: port collision, retrying with new ports" >&2
        continue
      fi
      cluster_fail "node(s)$died exited during startup; all nodes were stopped"
    fi
    notready=""
    for ((n = 1; n <= NODES; n++)); do
      ((ready[n])) || notready+=" $n"
    done
    cluster_fail "node(s)$notready not ready within ${START_TIMEOUT}s (no startup-complete line in the log or broker port closed); all nodes were stopped"
  done

  local list=""
  for ((n = 1; n <= NODES; n++)); do list+="${list:+,}127.0.0.1:${bport[n]}"; done
  echo "$list" >"$CDIR/bootstrap.tmp"
  mv "$CDIR/bootstrap.tmp" "$CDIR/bootstrap"
  local took
  took="$(since "$t0")"
  for ((n = 1; n <= NODES; n++)); do
    use_node "$n"
    log_line "cluster ready at $list after ${took}s (this is node $n, pid ${npid[n]})"
  done
  echo "kafka.sh: $NODES-node cluster ready in ${took}s (pids ${npid[*]}, dir $CDIR)" >&2
  echo "$list"
}

# Stop all nodes of CDIR=DIR at once (caller holds the exclusive lock).
#
# All nodes get SIGTERM together, so each broker asks the still-complete quorum for its
# controlled shutdown. A broker whose controlled shutdown was not approved before the quorum
# went away (e.g. a controller election raced with the shutdown, or fewer than a majority
# of nodes was running to begin with) would wait minutes for an approval that cannot come:
# once fewer than a majority of nodes is alive, the rest get QUORUM_LOST_GRACE seconds
# (enough for KRaft's 5 s graceful resignation) and are then SIGKILLed. STOP_GRACE still
# bounds the whole stop.
QUORUM_LOST_GRACE=10
cluster_stop() {
  CDIR="$DIR"
  local n pid t0 t_lost="" elapsed reason=""
  local -a pids=() nodes=() left=() left_nodes=()
  t0="$(now_ms)"
  while read -r n pid; do
    [[ -n "$pid" ]] || continue
    pids+=("$pid")
    nodes+=("$n")
    use_node "$n"
    log_line "stop requested (cluster stop, SIGTERM pid $pid)"
    echo "kafka.sh: stopping node $n pid $pid ($DIR)" >&2
  done <<<"$(cluster_running)"
  if ((${#pids[@]} == 0)); then
    echo "kafka.sh: not running ($CDIR)" >&2
  else
    for pid in "${pids[@]}"; do
      kill -TERM "$pid" 2>/dev/null || true
      kill -CONT "$pid" 2>/dev/null || true
    done
    while true; do
      left=()
      left_nodes=()
      for ((n = 0; n < ${#pids[@]}; n++)); do
        if pid_alive "${pids[n]}"; then
          left+=("${pids[n]}")
          left_nodes+=("${nodes[n]}")
        fi
      done
      ((${#left[@]})) || break
      elapsed=$(($(now_ms) - t0))
      if [[ -z "$t_lost" ]] && ((${#left[@]} < NODES / 2 + 1)); then t_lost="$(now_ms)"; fi
      if ((elapsed >= STOP_GRACE * 1000)); then
        reason="did not exit within ${STOP_GRACE}s"
      elif [[ -n "$t_lost" ]] && (($(now_ms) - t_lost >= QUORUM_LOST_GRACE * 1000)); then
        reason="still running ${QUORUM_LOST_GRACE}s after the quorum was gone (no controlled shutdown possible)"
      fi
      if [[ -n "$reason" ]]; then
        echo "kafka.sh: node(s) ${left_nodes[*]} $reason, sending SIGKILL" >&2
        for n in "${left_nodes[@]}"; do
          use_node "$n"
          log_line "cluster stop: $reason, SIGKILL"
        done
        kill_pids_now "${left[@]}" || echo "kafka.sh: WARNING: pid(s) ${left[*]} survived SIGKILL" >&2
        break
      fi
      sleep 0.1
    done
    for ((n = 1; n <= NODES; n++)); do
      use_node "$n"
      log_line "cluster stopped after $(since "$t0")s"
    done
  fi
  for ((n = 1; n <= NODES; n++)); do rm -f "$CDIR/node$n/kafka.pid"; done
  rm -f "$CDIR/bootstrap"
  DIR="$CDIR"
}

# Comma-separated 127.0.0.1:PORT of the nodes of CDIR=DIR that run and are not paused.
cluster_live_bootstrap() {
  CDIR="$DIR"
  local n pid list=""
  for ((n = 1; n <= NODES; n++)); do
    use_node "$n"
    if pid="$(running_pid)" && [[ "$(pid_state "$pid")" != T ]]; then
      list+="${list:+,}127.0.0.1:$(node_port "$n")"
    fi
  done
  DIR="$CDIR"
  echo "$list"
}

# Cluster status: node states on stderr; bootstrap list on stdout + rc 0 if >= 1 node runs.
cluster_status() {
  CDIR="$DIR"
  local n pid any=0
  for ((n = 1; n <= NODES; n++)); do
    use_node "$n"
    if pid="$(running_pid)"; then
      any=1
      if [[ "$(pid_state "$pid")" == T ]]; then
        echo "kafka.sh: node $n paused (pid $pid, 127.0.0.1:$(node_port "$n"))" >&2
      else
        echo "kafka.sh: node $n running (pid $pid, 127.0.0.1:$(node_port "$n"))" >&2
      fi
    else
      echo "kafka.sh: node $n not running (127.0.0.1:$(node_port "$n"))" >&2
    fi
  done
  DIR="$CDIR"
  if ((any)) && [[ -s "$CDIR/bootstrap" ]]; then
    cat "$CDIR/bootstrap"
    return 0
  fi
  echo "kafka.sh: not running ($CDIR)" >&2
  return 1
}

# node_setup [DIR] N: sets CDIR, NODE and DIR=CDIR/nodeN (no locking).
node_setup() {
  local d="" k
  if (($# == 2)); then
    d="$1" k="$2"
  else
    k="$1"
  fi
  if [[ ! "$k" =~ ^[0-9]+$ ]] || ((k < 1 || k > NODES)); then
    echo "kafka.sh: node number must be 1..$NODES, got '$k'" >&2
    exit 2
  fi
  CDIR="$(resolve_dir "$d")"
  is_cluster_dir "$CDIR" || { echo "kafka.sh: $CDIR holds no cluster (run: $0 start-cluster${d:+ $d})" >&2; exit 1; }
  NODE="$k"
  use_node "$NODE"
  [[ -f "$DIR/server.properties" ]] || { echo "kafka.sh: node $NODE has no $DIR/server.properties (run: $0 start-cluster${d:+ $d})" >&2; exit 1; }
}

# Shared lock on the cluster DIR (fd 9: excludes start-cluster/stop, not other node commands)
# plus an exclusive lock on the node (fd 8). Node commands on different nodes run in parallel,
# e.g. node-start of two nodes while the quorum is down.
node_lock() {
  DIR="$CDIR"
  lock_dir shared
  use_node "$NODE"
  exec 8>"$DIR/.kafka.sh.lock"
  flock -w $((START_TIMEOUT + 60)) 8 || { echo "kafka.sh: could not lock $DIR (another kafka.sh busy?)" >&2; exit 1; }
}

node_wait_gone() { # node_wait_gone PID SECONDS -> rc 1 if still alive
  local i
  for ((i = 0; i < $2 * 20; i++)); do
    pid_alive "$1" || return 0
    sleep 0.05
  done
  ! pid_alive "$1"
}

cmd_node_stop() {
  node_setup "$@"
  node_lock
  local pid t0
  if ! pid="$(running_pid)"; then
    rm -f "$DIR/kafka.pid"
    log_line "node-stop: node $NODE not running"
    echo "kafka.sh: node $NODE not running ($DIR)" >&2
    return 0
  fi
  t0="$(now_ms)"
  log_line "node-stop: SIGTERM pid $pid (grace ${STOP_GRACE}s, then SIGKILL)"
  kill_pid "$pid" "$STOP_GRACE"
  if pid_alive "$pid"; then
    fail "node $NODE (pid $pid) is still alive after SIGTERM and SIGKILL"
  fi
  rm -f "$DIR/kafka.pid"
  log_line "node-stop: pid $pid exited after $(since "$t0")s"
  echo "kafka.sh: node $NODE stopped (pid $pid, SIGTERM, $(since "$t0")s)" >&2
}

cmd_node_kill() {
  node_setup "$@"
  node_lock
  local pid t0
  if ! pid="$(running_pid)"; then
    rm -f "$DIR/kafka.pid"
    log_line "node-kill: node $NODE not running"
    echo "kafka.sh: node $NODE not running ($DIR)" >&2
    return 0
  fi
  t0="$(now_ms)"
  log_line "node-kill: SIGKILL pid $pid"
  kill -KILL "$pid" 2>/dev/null || true
  node_wait_gone "$pid" 30 || fail "node $NODE (pid $pid) is still alive 30 s after SIGKILL"
  rm -f "$DIR/kafka.pid"
  log_line "node-kill: pid $pid gone after $(since "$t0")s"
  echo "kafka.sh: node $NODE killed (pid $pid, SIGKILL, gone after $(since "$t0")s)" >&2
}

cmd_node_pause() {
  node_setup "$@"
  node_lock
  local pid i
  pid="$(running_pid)" || { echo "kafka.sh: node $NODE not running ($DIR), cannot pause it" >&2; exit 1; }
  if [[ "$(pid_state "$pid")" == T ]]; then
    log_line "node-pause: pid $pid already paused"
    echo "kafka.sh: node $NODE already paused (pid $pid)" >&2
    return 0
  fi
  log_line "node-pause: SIGSTOP pid $pid"
  kill -STOP "$pid"
  for ((i = 0; i < 100; i++)); do
    [[ "$(pid_state "$pid")" != T ]] || break
    sleep 0.05
  done
  [[ "$(pid_state "$pid")" == T ]] || fail "node $NODE (pid $pid) is not stopped 5 s after SIGSTOP"
  echo "kafka.sh: node $NODE paused (pid $pid, SIGSTOP)" >&2
}

cmd_node_resume() {
  node_setup "$@"
  node_lock
  local pid i
  pid="$(running_pid)" || { echo "kafka.sh: node $NODE not running ($DIR), cannot resume it" >&2; exit 1; }
  if [[ "$(pid_state "$pid")" != T ]]; then
    kill -CONT "$pid" 2>/dev/null || true
    log_line "node-resume: pid $pid was not paused"
    echo "kafka.sh: node $NODE was not paused (pid $pid)" >&2
    return 0
  fi
  log_line "node-resume: SIGCONT pid $pid"
  kill -CONT "$pid"
  for ((i = 0; i < 100; i++)); do
    [[ "$(pid_state "$pid")" == T ]] || break
    sleep 0.05
  done
  [[ "$(pid_state "$pid")" != T ]] || fail "node $NODE (pid $pid) is still stopped 5 s after SIGCONT"
  echo "kafka.sh: node $NODE resumed (pid $pid, SIGCONT)" >&2
}

cmd_node_start() {
  node_setup "$@"
  node_lock
  local pid
  if pid="$(running_pid)"; then
    if [[ "$(pid_state "$pid")" == T ]]; then
      echo "kafka.sh: node $NODE (pid $pid) is paused; resume it ($0 node-resume $CDIR $NODE)" >&2
      exit 1
    fi
    log_line "node-start: node $NODE already running (pid $pid)"
    echo "kafka.sh: node $NODE already running (pid $pid)" >&2
    return 0
  fi
  rm -f "$DIR/kafka.pid"
  [[ -s "$DIR/data/meta.properties" ]] || fail "node $NODE has no formatted storage in $DIR/data (run: $0 start-cluster $CDIR)"
  local java bport cport
  java="$(find_java)" || fail "$java"
  command -v setsid >/dev/null 2>&1 || fail "'setsid' (util-linux) is required"
  bport="$(node_port "$NODE")"
  cport="$(node_cport "$NODE")"
  [[ -n "$bport" && -n "$cport" ]] || fail "cannot read node $NODE's ports from $DIR/server.properties"
  if port_open "$bport" || port_open "$cport"; then
    fail "node $NODE's port $bport or $cport is in use by another process; a node keeps its ports, cannot restart it"
  fi

  local t0 off deadline up=0
  t0="$(now_ms)"
  off="$(log_size)"
  log_line "node-start: restarting node $NODE with its existing data (broker 127.0.0.1:$bport, controller 127.0.0.1:$cport)"
  launch_broker "$java" "$CLUSTER_HEAP_OPTS" || fail "node $NODE: broker JVM did not start (no pid written)"
  pid="$(cat "$DIR/kafka.pid")"
  deadline=$(($(date +%s) + START_TIMEOUT))
  while (($(date +%s) < deadline)); do
    if ! pid_alive "$pid"; then
      rm -f "$DIR/kafka.pid"
      if log_since_has "$off" "BindException|Address already in use"; then
        fail "node $NODE (pid $pid) exited: its port $bport or $cport is taken"
      fi
      fail "node $NODE (pid $pid) exited during restart"
    fi
    if log_since_has "$off" "Kafka Server started" && port_open "$bport"; then
      up=1
      break
    fi
    sleep 0.2
  done
  if ((!up)); then
    kill_pid "$pid" 10
    rm -f "$DIR/kafka.pid"
    fail "node $NODE not ready within ${START_TIMEOUT}s after restart (is a quorum of $((NODES / 2 + 1)) nodes up?); it was stopped"
  fi
  log_line "node-start: node $NODE up (pid $pid, 127.0.0.1:$bport) after $(since "$t0")s"
  echo "kafka.sh: node $NODE started in $(since "$t0")s (pid $pid, 127.0.0.1:$bport)" >&2
}

cmd_node_pid() {
  node_setup "$@"
  local pid
  pid="$(running_pid)" || { echo "kafka.sh: node $NODE not running ($DIR)" >&2; exit 1; }
  echo "$pid"
}

cmd_node_port() {
  node_setup "$@"
  local p
  p="$(node_port "$NODE")"
  [[ -n "$p" ]] || { echo "kafka.sh: cannot read node $NODE's broker port from $DIR/server.properties" >&2; exit 1; }
  echo "$p"
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
  bootstrap="$(cmd_status "$DIR" 2>/dev/null)" || { echo "kafka.sh: no broker running from $DIR (run: $0 start${d:+ $d}, or start-cluster)" >&2; exit 1; }
  if is_cluster_dir "$DIR"; then
    # Only nodes that run and are not SIGSTOPped: a paused node accepts TCP connections (the
    # kernel completes the handshake) but never answers, and a tool that bootstraps from it
    # stalls until its API timeout (60 s).
    local live
    live="$(cluster_live_bootstrap)"
    bootstrap="${live:-$bootstrap}"
  fi
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
    start-cluster) (($# <= 1)) || usage; cmd_start_cluster "$@" ;;
    node-stop | node-kill | node-pause | node-resume | node-start | node-pid | node-port)
      (($# >= 1 && $# <= 2)) || usage
      "cmd_${cmd//-/_}" "$@"
      ;;
    -h | --help | help) usage ;;
    *) echo "kafka.sh: unknown command '$cmd'" >&2; usage ;;
  esac
}

main "$@"
