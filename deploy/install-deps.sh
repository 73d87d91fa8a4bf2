#!/usr/bin/env bash
# Install everything eventbus needs to build and test on Debian 12 (bookworm):
#   * Debian packages (C++ toolchain, gRPC/protobuf, Java 17, Maven, ...)
#   * librdkafka 2.8, built from Debian 13's source package when the system's
#     is older                       -> <repo>/build/deps/librdkafka
#   * the Kafka 4.1.1 broker jars      -> <repo>/build/kafka-lib   (deploy/kafka/fetch.sh)
#   * grpcurl (pinned, via `go install`) -> <repo>/build/tools/bin/grpcurl
#   * Debian's prometheus package (server and promtool), unpacked, not
#     installed                        -> <repo>/build/deps/prometheus/usr/bin
#   * for the Kubernetes manifests' test (deploy/kubernetes/): kubernetes-validate
#     (pinned, with its dependencies) -> <repo>/build/tools/venv, and kustomize
#     (pinned, via `go install`) only when there is no kubectl
#                                      -> <repo>/build/tools/bin/kustomize
#   * for the container image's test (deploy/container/, tests/container_test.py):
#     podman with runc (/etc/containers/containers.conf) and debootstrap, and
#     the Dockerfile's base image made with them once (deploy/container/base-image.sh)
#
# Idempotent: only missing packages are installed (`apt-get update` runs only then),
# librdkafka is built once (a stamp), jars are fetched only when missing, grpcurl
# and kustomize are built only when missing, the venv is made again only when
# its pinned packages change (a stamp).
# Runs as root, or through sudo when not root.
#
# Usage: deploy/install-deps.sh
#        deploy/install-deps.sh --build-only   only what building the sidecar and
#            the CLI needs (Debian packages, librdkafka): the container image's
#            builder stage (deploy/container/Dockerfile)
set -euo pipefail
BUILD_ONLY=0
if [[ "${1:-}" == --build-only ]]; then
  BUILD_ONLY=1
elif (($# > 0)); then
  echo "usage: $0 [--build-only]" >&2
  exit 2
fi

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
  libyaml-cpp-dev libcpp-httplib-dev libjemalloc-dev
  openjdk-17-jdk-headless maven python3 curl ca-certificates
  # python3 -m venv (Debian's python3 has no ensurepip without it).
  python3-venv
  # To build librdkafka from its Debian source package (its Build-Depends).
  dpkg-dev libssl-dev libsasl2-dev libzstd-dev liblz4-dev zlib1g-dev libcurl4-openssl-dev
  # For deploy/fuzz.sh: clang, its libFuzzer and sanitizer runtimes, and
  # llvm-symbolizer for readable sanitizer reports.
  clang libclang-rt-14-dev llvm
  # For tests/container_test.py: podman (with runc) builds and runs the image
  # of deploy/container/; debootstrap makes its builder's base image.
  podman runc debootstrap
)
# --build-only: what building the sidecar and the CLI needs, and librdkafka's
# Build-Depends.
BUILD_ONLY_APT_PACKAGES=(
  build-essential g++ cmake ninja-build pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libspdlog-dev libyaml-cpp-dev libcpp-httplib-dev libjemalloc-dev curl ca-certificates
  dpkg-dev libssl-dev libsasl2-dev libzstd-dev liblz4-dev zlib1g-dev libcurl4-openssl-dev
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
  ((BUILD_ONLY)) && wanted=("${BUILD_ONLY_APT_PACKAGES[@]}")
  if ((!BUILD_ONLY)) && ! command -v go >/dev/null 2>&1; then
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

# ------------------------------------------------------------ Kubernetes tools
# For the kubernetes_manifests test (tests/kubernetes_manifests_test.py), which
# renders deploy/kubernetes/ and validates the objects offline:
# kubernetes-validate, which bundles the Kubernetes API schemas (1.25 to 1.37
# in 1.37.0), in a venv of its own with every package pinned; and kustomize,
# only when there is no kubectl (the test renders with `kubectl kustomize`
# when kubectl is on PATH, else with build/tools/bin/kustomize).
TOOLS_VENV="$REPO/build/tools/venv"
KUBERNETES_VALIDATE_PACKAGES=(
  kubernetes-validate==1.37.0
  # Its dependencies, as pip resolved them for Python 3.11.
  attrs==26.1.0 importlib_resources==7.1.0 jsonschema==4.26.0
  jsonschema-specifications==2025.9.1 packaging==26.4 PyYAML==6.0.4
  referencing==0.37.0 rpds-py==2026.9.1 typing_extensions==4.16.0
)
# kustomize versions, newest first, each with the minimum Go it needs (its
# go.mod). The first one the local Go can build is installed.
KUSTOMIZE_CANDIDATES=(
  "v5.8.2 1.26"
  "v5.7.1 1.22"
  "v5.4.3 1.21"
  "v5.0.1 1.19"
)

kubernetes_validate_version() {
  "$TOOLS_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("kubernetes-validate"))' 2>/dev/null
}

install_kubernetes_validate() {
  local stamp="$TOOLS_VENV/.eventbus-stamp" want
  want="$(printf '%s\n' "${KUBERNETES_VALIDATE_PACKAGES[@]}")"
  if [[ -x "$TOOLS_VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]] &&
    "$TOOLS_VENV/bin/python" -c 'import kubernetes_validate, yaml' 2>/dev/null; then
    step "kubernetes-validate already installed: $TOOLS_VENV ($(kubernetes_validate_version))"
    return 0
  fi
  step "installing kubernetes-validate into $TOOLS_VENV"
  rm -rf "$TOOLS_VENV"
  mkdir -p "$(dirname "$TOOLS_VENV")"
  python3 -m venv "$TOOLS_VENV" || die "python3 -m venv $TOOLS_VENV failed (Debian: apt-get install python3-venv)"
  local log="$TOOLS_VENV/pip.log"
  "$TOOLS_VENV/bin/python" -m pip install --disable-pip-version-check -q "${KUBERNETES_VALIDATE_PACKAGES[@]}" >"$log" 2>&1 ||
    { tail -n 20 "$log" >&2; die "pip install of kubernetes-validate failed (is PyPI reachable?)"; }
  "$TOOLS_VENV/bin/python" -c 'import kubernetes_validate, yaml' ||
    die "kubernetes-validate does not import after installing it into $TOOLS_VENV"
  echo "$want" >"$stamp"
  step "installed kubernetes-validate $(kubernetes_validate_version): $TOOLS_VENV"
}

kustomize_version() {
  go version -m "$1" 2>/dev/null | awk '$1 == "mod" && $2 == "sigs.k8s.io/kustomize/kustomize/v5" {print $3}'
}

install_kustomize() {
  local bin="$TOOLS_BIN/kustomize"
  if command -v kubectl >/dev/null 2>&1; then
    step "kubectl found ($(command -v kubectl)): the manifests are rendered with kubectl kustomize, no kustomize needed"
    return 0
  fi
  if [[ -x "$bin" ]]; then
    step "kustomize already present: $bin ($(kustomize_version "$bin"))"
    return 0
  fi
  command -v go >/dev/null 2>&1 || die "'go' not found on PATH (needed to build kustomize; install golang-go)"
  local gover have
  gover="$(go env GOVERSION 2>/dev/null || true)"
  gover="${gover#go}"
  [[ "$gover" =~ ^[0-9]+\.[0-9]+ ]] || die "cannot determine the Go version (go env GOVERSION -> '$gover')"
  have="$(go_minor_number "$gover")"
  mkdir -p "$TOOLS_BIN"
  local log c v need tried=()
  log="$(mktemp)"
  for c in "${KUSTOMIZE_CANDIDATES[@]}"; do
    read -r v need <<<"$c"
    (($(go_minor_number "$need") > have)) && continue
    tried+=("$v")
    step "building kustomize $v with go $gover (GOBIN=$TOOLS_BIN) ..."
    # Build outside any module; never let Go download a newer toolchain.
    if (cd / && GOBIN="$TOOLS_BIN" GOFLAGS=-mod=mod GOTOOLCHAIN=local \
          go install "sigs.k8s.io/kustomize/kustomize/v5@$v") >"$log" 2>&1; then
      rm -f "$log"
      [[ -x "$bin" ]] || die "go install reported success but $bin is missing"
      step "installed kustomize $v: $bin"
      return 0
    fi
    step "kustomize $v did not build with go $gover:"
    tail -n 15 "$log" >&2 || true
  done
  rm -f "$log"
  ((${#tried[@]} > 0)) || die "go $gover is too old for every pinned kustomize (oldest needs go ${KUSTOMIZE_CANDIDATES[-1]#* })"
  die "could not build kustomize (tried: ${tried[*]}) with go $gover"
}

install_kubernetes_tools() {
  install_kubernetes_validate
  install_kustomize
}

kubernetes_renderer() {
  if command -v kubectl >/dev/null 2>&1; then
    echo "kubectl kustomize ($(command -v kubectl))"
  else
    echo "$TOOLS_BIN/kustomize ($(kustomize_version "$TOOLS_BIN/kustomize"))"
  fi
}

# ------------------------------------------------------------ container tools
# For tests/container_test.py, which builds deploy/container/Dockerfile with
# podman and runs the image: podman runs containers with runc and cgroupfs,
# and with nofile/nproc limits under this machine's hard limits (crun fails
# here on the hybrid cgroups, and podman's default nofile of 1048576 is
# above the hard limit: "error setting rlimits"). Then the Dockerfile's base
# image, made locally once (no registry is reachable here).
CONTAINERS_CONF=/etc/containers/containers.conf
CONTAINERS_CONF_MARKER="# Written by eventbus's deploy/install-deps.sh (for tests/container_test.py)."

install_container_tools() {
  command -v podman >/dev/null 2>&1 || die "podman not found after installing packages"
  local want
  want="$(printf '%s\n' "$CONTAINERS_CONF_MARKER" '[containers]' \
    'default_ulimits = ["nofile=16384:16384", "nproc=16384:16384"]' '' '[engine]' \
    'cgroup_manager = "cgroupfs"' 'runtime = "runc"')"
  if [[ -f "$CONTAINERS_CONF" ]] && ! grep -qF "$CONTAINERS_CONF_MARKER" "$CONTAINERS_CONF"; then
    step "$CONTAINERS_CONF is not this script's: left alone (the container test needs runtime = \"runc\", cgroup_manager = \"cgroupfs\" and default_ulimits within the hard limits)"
  elif [[ "$(cat "$CONTAINERS_CONF" 2>/dev/null)" != "$want" ]]; then
    "${SUDO[@]}" mkdir -p "$(dirname "$CONTAINERS_CONF")"
    printf '%s\n' "$want" | "${SUDO[@]}" tee "$CONTAINERS_CONF" >/dev/null || die "cannot write $CONTAINERS_CONF"
    step "wrote $CONTAINERS_CONF (podman: runc, cgroupfs, nofile and nproc 16384)"
  fi
  local mirror
  mirror="$(debian_mirror)"
  [[ -n "$mirror" ]] || die "no Debian archive found in the apt sources (needed to debootstrap the container base image)"
  "${SUDO[@]}" "$REPO/deploy/container/base-image.sh" "$mirror" || die "making the container base image failed"
}

# ------------------------------------------------------------ main
install_apt_packages
install_librdkafka
if ((BUILD_ONLY)); then
  step "done (--build-only): librdkafka $(prefix_pkg_config --modversion rdkafka 2>/dev/null || pkg-config --modversion rdkafka)"
  exit 0
fi
command -v java >/dev/null 2>&1 || [[ -x "${JAVA_HOME:-/nonexistent}/bin/java" ]] || die "java not found after installing packages"
command -v mvn >/dev/null 2>&1 || die "mvn not found after installing packages"
fetch_kafka
install_grpcurl
install_prometheus
install_kubernetes_tools
install_container_tools

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
  k8s valid.: kubernetes-validate $(kubernetes_validate_version) ($TOOLS_VENV)
  kustomize : $(kubernetes_renderer)
  podman    : $(podman --version) (runtime $(podman info --format '{{.Host.OCIRuntime.Name}}' 2>/dev/null))
EOF
