#!/usr/bin/env bash
# Install everything eventbus needs to build and test on Debian 12 (bookworm):
#   * Debian packages (C++ toolchain, gRPC/protobuf, librdkafka, Java 17, Maven, ...)
#   * the Kafka 4.1.1 broker jars      -> <repo>/build/kafka-lib   (deploy/kafka/fetch.sh)
#   * grpcurl (pinned, via `go install`) -> <repo>/build/tools/bin/grpcurl
#
# Idempotent: only missing packages are installed (`apt-get update` runs only then),
# jars are fetched only when missing, grpcurl is built only when missing.
# Runs as root, or through sudo when not root.
#
# Usage: deploy/install-deps.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
TOOLS_BIN="$REPO/build/tools/bin"
KAFKA_LIB="$REPO/build/kafka-lib"

# grpcurl versions, newest first, each with the minimum Go it needs (its go.mod).
# The first one the local Go can build is installed.
GRPCURL_CANDIDATES=(
  "v1.9.4 1.25"
  "v1.9.3 1.21"
  "v1.8.9 1.18"
  "v1.8.7 1.15"
)

APT_PACKAGES=(
  build-essential g++ cmake ninja-build pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  librdkafka-dev libabsl-dev libspdlog-dev libgtest-dev libgmock-dev
  libyaml-cpp-dev libcpp-httplib-dev
  openjdk-17-jdk-headless maven python3 curl ca-certificates
)

die() {
  echo "install-deps: ERROR: $*" >&2
  exit 1
}
step() { echo "install-deps: $*" >&2; }

SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  fi
fi

# ------------------------------------------------------------ Debian packages
installed_pkg() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

install_apt_packages() {
  command -v dpkg-query >/dev/null 2>&1 || die "dpkg-query not found: this script supports Debian 12 (apt/dpkg) only"
  local wanted=("${APT_PACKAGES[@]}") missing=() p
  if ! command -v go >/dev/null 2>&1; then
    wanted+=(golang-go)
  fi
  for p in "${wanted[@]}"; do
    installed_pkg "$p" || missing+=("$p")
  done
  if ((${#missing[@]} == 0)); then
    step "all ${#wanted[@]} Debian packages already installed"
    return 0
  fi
  if [[ "$(id -u)" -ne 0 && ${#SUDO[@]} -eq 0 ]]; then
    die "not root and no sudo: cannot install missing packages: ${missing[*]}"
  fi
  step "installing ${#missing[@]} missing Debian packages: ${missing[*]}"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q ||
    die "apt-get update failed"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" ||
    die "apt-get install failed for: ${missing[*]}"
  for p in "${missing[@]}"; do
    installed_pkg "$p" || die "package $p is still not installed after apt-get install"
  done
}

# ------------------------------------------------------------ Kafka jars
fetch_kafka() {
  # shellcheck source-path=SCRIPTDIR source=kafka/fetch.sh
  source "$HERE/kafka/fetch.sh"
  kafka_fetch_jars "$KAFKA_LIB" || die "fetching the Kafka jars failed (deploy/kafka/fetch.sh)"
}

# ------------------------------------------------------------ grpcurl
# "1.26.8" -> 126 style comparable number (major*100 + minor).
go_minor_number() {
  local v="$1" major minor
  major="${v%%.*}"
  minor="${v#*.}"
  minor="${minor%%.*}"
  minor="${minor%%[!0-9]*}"
  echo $((major * 100 + ${minor:-0}))
}

# Module version the binary was built from (go version -m), else its -version output.
grpcurl_version() {
  local v=""
  if command -v go >/dev/null 2>&1; then
    v="$(go version -m "$1" 2>/dev/null | awk '$1 == "mod" && $2 == "github.com/fullstorydev/grpcurl" {print $3}')"
  fi
  [[ -n "$v" ]] || v="$("$1" -version 2>&1 | head -n1)"
  echo "$v"
}

install_grpcurl() {
  local bin="$TOOLS_BIN/grpcurl"
  if [[ -x "$bin" ]]; then
    step "grpcurl already present: $bin ($(grpcurl_version "$bin"))"
    return 0
  fi
  command -v go >/dev/null 2>&1 || die "'go' not found on PATH (needed to build grpcurl; install golang-go)"
  local gover have
  gover="$(go env GOVERSION 2>/dev/null || true)"
  gover="${gover#go}"
  [[ "$gover" =~ ^[0-9]+\.[0-9]+ ]] || die "cannot determine the Go version (go env GOVERSION -> '$gover')"
  have="$(go_minor_number "$gover")"

  mkdir -p "$TOOLS_BIN"
  local log
  log="$(mktemp)"
  local c v need tried=()
  for c in "${GRPCURL_CANDIDATES[@]}"; do
    read -r v need <<<"$c"
    if (($(go_minor_number "$need") > have)); then
      continue
    fi
    tried+=("$v")
    step "building grpcurl $v with go $gover (GOBIN=$TOOLS_BIN) ..."
    # Build outside any module; never let Go download a newer toolchain.
    if (cd / && GOBIN="$TOOLS_BIN" GOFLAGS=-mod=mod GOTOOLCHAIN=local \
          go install -ldflags "-X main.version=$v" "github.com/fullstorydev/grpcurl/cmd/grpcurl@$v") >"$log" 2>&1; then
      rm -f "$log"
      [[ -x "$bin" ]] || die "go install reported success but $bin is missing"
      step "installed grpcurl $v: $bin"
      return 0
    fi
    step "grpcurl $v did not build with go $gover:"
    tail -n 15 "$log" >&2 || true
  done
  rm -f "$log"
  if ((${#tried[@]} == 0)); then
    die "go $gover is too old for every pinned grpcurl (oldest needs go ${GRPCURL_CANDIDATES[-1]#* })"
  fi
  die "could not build grpcurl (tried: ${tried[*]}) with go $gover"
}

# ------------------------------------------------------------ main
install_apt_packages
command -v java >/dev/null 2>&1 || [[ -x "${JAVA_HOME:-/nonexistent}/bin/java" ]] || die "java not found after installing packages"
command -v mvn >/dev/null 2>&1 || die "mvn not found after installing packages"
fetch_kafka
install_grpcurl

java_bin="java"
[[ -n "${JAVA_HOME:-}" ]] && java_bin="$JAVA_HOME/bin/java"
cat <<EOF
install-deps: done
  java      : $("$java_bin" -version 2>&1 | head -n1)
  maven     : $(mvn -v 2>/dev/null | head -n1 | sed 's/\x1b\[[0-9;]*m//g')
  go        : $(go version)
  cmake     : $(cmake --version | head -n1)
  protoc    : $(protoc --version)
  kafka jars: $KAFKA_LIB ($(find "$KAFKA_LIB" -maxdepth 1 -name '*.jar' | wc -l) jars; run deploy/kafka/kafka.sh start)
  grpcurl   : $TOOLS_BIN/grpcurl ($(grpcurl_version "$TOOLS_BIN/grpcurl"))
EOF
