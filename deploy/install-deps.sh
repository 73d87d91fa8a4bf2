#!/usr/bin/env bash
# Install everything eventbus needs to build and test on Debian 12 (bookworm):
#   * Debian packages (C++ toolchain, gRPC/protobuf, Java 17, Maven, ...)
#   * librdkafka 2.8, built from Debian 13's source package when the system's
#     is older                       -> <repo>/build/deps/librdkafka
#   * the Kafka 4.1.1 broker jars      -> <repo>/build/kafka-lib   (deploy/kafka/fetch.sh)
#   * grpcurl (pinned, via `go install`) -> <repo>/build/tools/bin/grpcurl
#   * Debian's prometheus package (server and promtool), unpacked, not
#     installed                        -> <repo>/build/deps/prometheus/usr/bin
#
# Idempotent: only missing packages are installed (`apt-get update` runs only then),
# librdkafka is built once (a stamp), jars are fetched only when missing, grpcurl
# is built only when missing.
# Runs as root, or through sudo when not root.
#
# Usage: deploy/install-deps.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
TOOLS_BIN="$REPO/build/tools/bin"
DEPS="$REPO/build/deps"
RDKAFKA_PREFIX="$DEPS/librdkafka"
# librdkafka: the oldest version eventbus accepts, and the Debian release whose
# source package provides it. Debian 12's librdkafka (2.0.2) is too old: it can
# report events delivered that Kafka never stored (see docs/reliability.md).
RDKAFKA_MIN_VERSION=2.8
RDKAFKA_SOURCE_SUITE=trixie
# The features eventbus needs of it; configure fails when one is missing.
RDKAFKA_CONFIGURE=(--enable-ssl --enable-gssapi --enable-curl --enable-zstd --enable-lz4-ext --enable-zlib)
KAFKA_LIB="$REPO/build/kafka-lib"
PROMETHEUS_DIR="$DEPS/prometheus"

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
  libabsl-dev libspdlog-dev libgtest-dev libgmock-dev
  libyaml-cpp-dev libcpp-httplib-dev
  openjdk-17-jdk-headless maven python3 curl ca-certificates
  # To build librdkafka from its Debian source package (its Build-Depends).
  dpkg-dev libssl-dev libsasl2-dev libzstd-dev liblz4-dev zlib1g-dev libcurl4-openssl-dev
  # For deploy/fuzz.sh: clang, its libFuzzer and sanitizer runtimes, and
  # llvm-symbolizer for readable sanitizer reports.
  clang libclang-rt-14-dev llvm
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

# ------------------------------------------------------------ librdkafka
# Built from the Debian source package of $RDKAFKA_SOURCE_SUITE: `apt-get source`
# through a deb-src entry of its own (a private apt state under build/deps/apt;
# the system's apt configuration is left alone), so apt checks the sources
# against Debian's signed index, with the mirror and keyring the system's
# Debian entries use. Installed into $RDKAFKA_PREFIX, where CMake's pkg-config
# search looks first.
rdkafka_stamp_text() {
  echo "librdkafka $1 ${RDKAFKA_CONFIGURE[*]}"
}

prefix_pkg_config() {
  PKG_CONFIG_PATH="$RDKAFKA_PREFIX/lib/pkgconfig" PKG_CONFIG_LIBDIR="$RDKAFKA_PREFIX/lib/pkgconfig" pkg-config "$@"
}

# The URI of the Debian archive the system's apt uses (deb822 or one-line form).
debian_mirror() {
  local f uri=""
  for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -r "$f" ]] || continue
    if [[ "$f" == *.sources ]]; then
      uri="$(awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }' "$f")"
    else
      uri="$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^(https?|file):.*\/debian\/?$/) { print $i; exit } }' "$f")"
    fi
    [[ -n "$uri" ]] && break
  done
  echo "${uri%/}"
}

install_librdkafka() {
  if pkg-config --atleast-version="$RDKAFKA_MIN_VERSION" rdkafka 2>/dev/null; then
    step "the system's librdkafka $(pkg-config --modversion rdkafka) is new enough"
    return 0
  fi
  local stamp="$RDKAFKA_PREFIX/.eventbus-stamp" have=""
  have="$(prefix_pkg_config --modversion rdkafka 2>/dev/null || true)"
  if [[ -n "$have" && -f "$stamp" && "$(cat "$stamp")" == "$(rdkafka_stamp_text "$have")" ]] &&
    prefix_pkg_config --atleast-version="$RDKAFKA_MIN_VERSION" rdkafka; then
    step "librdkafka already built: $RDKAFKA_PREFIX ($have)"
    return 0
  fi
  local mirror keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  mirror="$(debian_mirror)"
  [[ -n "$mirror" ]] || die "no Debian archive found in the apt sources (needed for the $RDKAFKA_SOURCE_SUITE source package of librdkafka)"
  [[ -r "$keyring" ]] || die "$keyring is missing (package debian-archive-keyring)"

  local apt_dir="$DEPS/apt" src="$DEPS/src"
  rm -rf "$apt_dir" "$src"
  mkdir -p "$apt_dir/sources" "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$src"
  : >"$apt_dir/sources.list"
  printf 'Types: deb-src\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: %s\n' \
    "$mirror" "$RDKAFKA_SOURCE_SUITE" "$keyring" >"$apt_dir/sources/$RDKAFKA_SOURCE_SUITE-src.sources"
  local apt_opts=(
    -q -o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=$apt_dir/sources"
    -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
    -o "APT::Sandbox::User=$(id -un)"
  )
  step "fetching Debian $RDKAFKA_SOURCE_SUITE's librdkafka source package"
  apt-get "${apt_opts[@]}" update >"$src/apt.log" 2>&1 ||
    { tail -n 20 "$src/apt.log" >&2; die "apt-get update for the $RDKAFKA_SOURCE_SUITE deb-src entry failed"; }
  (cd "$src" && apt-get "${apt_opts[@]}" source librdkafka) >>"$src/apt.log" 2>&1 ||
    { tail -n 20 "$src/apt.log" >&2; die "apt-get source librdkafka ($RDKAFKA_SOURCE_SUITE) failed"; }
  local dir
  dir="$(find "$src" -mindepth 1 -maxdepth 1 -type d -name 'librdkafka-*' | head -n1)"
  [[ -n "$dir" ]] || die "apt-get source librdkafka unpacked nothing in $src"

  step "building $(basename "$dir") into $RDKAFKA_PREFIX (about a minute)"
  rm -rf "$RDKAFKA_PREFIX"
  local log="$DEPS/librdkafka-build.log"
  if ! (cd "$dir" &&
    ./configure --prefix="$RDKAFKA_PREFIX" "${RDKAFKA_CONFIGURE[@]}" &&
    make -C src -j"$(nproc)" &&
    make -C src install) >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    die "building librdkafka failed (log: $log)"
  fi
  local version
  version="$(prefix_pkg_config --modversion rdkafka)" ||
    die "the librdkafka build installed no rdkafka.pc into $RDKAFKA_PREFIX"
  prefix_pkg_config --atleast-version="$RDKAFKA_MIN_VERSION" rdkafka ||
    die "Debian $RDKAFKA_SOURCE_SUITE's librdkafka is $version, older than $RDKAFKA_MIN_VERSION"
  rdkafka_stamp_text "$version" >"$stamp"
  rm -rf "$src" "$apt_dir"
  step "installed librdkafka $version: $RDKAFKA_PREFIX"
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

# ------------------------------------------------------------ Prometheus
# Debian's prometheus package (the server and promtool) for the metrics tests,
# fetched with apt (which checks it against Debian's signed index) and
# unpacked into $PROMETHEUS_DIR: installing it would start a system-wide
# Prometheus service.
install_prometheus() {
  local bin="$PROMETHEUS_DIR/usr/bin"
  if [[ -x "$bin/prometheus" && -x "$bin/promtool" ]]; then
    step "prometheus already unpacked: $bin"
    return 0
  fi
  local tmp="$DEPS/prometheus-deb"
  rm -rf "$tmp" "$PROMETHEUS_DIR"
  mkdir -p "$tmp"
  step "fetching Debian's prometheus package"
  if ! (cd "$tmp" && apt-get download -q prometheus) >"$tmp/apt.log" 2>&1; then
    # No package lists yet (a fresh image): read them once, then retry.
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$tmp/apt.log" 2>&1 ||
      { tail -n 20 "$tmp/apt.log" >&2; die "apt-get update failed"; }
    (cd "$tmp" && apt-get download -q prometheus) >>"$tmp/apt.log" 2>&1 ||
      { tail -n 20 "$tmp/apt.log" >&2; die "apt-get download prometheus failed"; }
  fi
  local deb
  deb="$(find "$tmp" -maxdepth 1 -name 'prometheus_*.deb' | head -n1)"
  [[ -n "$deb" ]] || die "apt-get download prometheus left no .deb in $tmp"
  dpkg-deb -x "$deb" "$PROMETHEUS_DIR" || die "cannot unpack $deb"
  [[ -x "$bin/prometheus" && -x "$bin/promtool" ]] ||
    die "the prometheus package has no usr/bin/prometheus and usr/bin/promtool"
  rm -rf "$tmp"
  step "unpacked $(basename "$deb"): $bin"
}

# ------------------------------------------------------------ main
install_apt_packages
install_librdkafka
command -v java >/dev/null 2>&1 || [[ -x "${JAVA_HOME:-/nonexistent}/bin/java" ]] || die "java not found after installing packages"
command -v mvn >/dev/null 2>&1 || die "mvn not found after installing packages"
fetch_kafka
install_grpcurl
install_prometheus

java_bin="java"
[[ -n "${JAVA_HOME:-}" ]] && java_bin="$JAVA_HOME/bin/java"
cat <<EOF
install-deps: done
  java      : $("$java_bin" -version 2>&1 | head -n1)
  maven     : $(mvn -v 2>/dev/null | head -n1 | sed 's/\x1b\[[0-9;]*m//g')
  go        : $(go version)
  cmake     : $(cmake --version | head -n1)
  protoc    : $(protoc --version)
  librdkafka: $(prefix_pkg_config --modversion rdkafka 2>/dev/null || pkg-config --modversion rdkafka)
  kafka jars: $KAFKA_LIB ($(find "$KAFKA_LIB" -maxdepth 1 -name '*.jar' | wc -l) jars; run deploy/kafka/kafka.sh start)
  grpcurl   : $TOOLS_BIN/grpcurl ($(grpcurl_version "$TOOLS_BIN/grpcurl"))
  prometheus: $("$PROMETHEUS_DIR/usr/bin/prometheus" --version 2>&1 | head -n1)
EOF
