#!/usr/bin/env bash
# Builds the image eventbus/eventbus-sidecar:<version> (the version of
# CMakeLists.txt's project()) from deploy/container/Dockerfile, with podman, or
# docker when there is no podman (CONTAINER_ENGINE=docker|podman chooses).
#
#   deploy/container/build-image.sh              compiles everything in the builder stage
#   deploy/container/build-image.sh --prebuilt   the host's build (deploy/build.sh) instead:
#       lays out build/container/rootfs with deploy/container/rootfs.sh, then
#       builds `--target prebuilt` (seconds; the host must be Debian 12, as
#       the image's libraries are the host's)
#
# Further arguments go to the engine's build command (e.g. --pull=never,
# --network=host). Prints the image name and its size. EVENTBUS_SIDECAR_BINARY
# and EVENTBUS_CLI_BINARY name other binaries for --prebuilt than build/'s.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

die() {
  echo "build-image: ERROR: $*" >&2
  exit 1
}

prebuilt=0
if [[ "${1:-}" == --prebuilt ]]; then
  prebuilt=1
  shift
fi
engine="${CONTAINER_ENGINE:-}"
if [[ -z "$engine" ]]; then
  if command -v podman >/dev/null 2>&1; then
    engine=podman
  elif command -v docker >/dev/null 2>&1; then
    engine=docker
  else
    die "neither podman nor docker found (deploy/install-deps.sh installs podman)"
  fi
fi
version="$(sed -n 's/^project(eventbus VERSION \([0-9.]*\).*/\1/p' "$REPO/CMakeLists.txt")"
[[ -n "$version" ]] || die "no version in the project() line of CMakeLists.txt"
image="eventbus/eventbus-sidecar:$version"
revision="$(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo unknown)"
args=(-f "$HERE/Dockerfile" -t "$image" --build-arg "VERSION=$version" --build-arg "REVISION=$revision")

if ((prebuilt)); then
  sidecar="${EVENTBUS_SIDECAR_BINARY:-$REPO/build/server/eventbus-sidecar}"
  cli="${EVENTBUS_CLI_BINARY:-$REPO/build/client/eventbus}"
  [[ -x "$sidecar" && -x "$cli" ]] || die "$sidecar or $cli is missing: run deploy/build.sh first"
  mkdir -p "$REPO/build/container"
  # One prebuilt image build at a time (the root filesystem is shared).
  exec 9>"$REPO/build/container/build.lock"
  flock 9
  "$HERE/rootfs.sh" "$REPO/build/container/rootfs" "$sidecar" "$cli"
  args+=(--target prebuilt)
fi

old="$("$engine" image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)"
echo "build-image: $engine build ${args[*]} $* $REPO" >&2
"$engine" build "${args[@]}" "$@" "$REPO"
# The image this one replaced under the tag, unless a container still uses it
# (rebuilding in every test run would pile them up).
if [[ -n "$old" && "$old" != "$("$engine" image inspect --format '{{.Id}}' "$image")" ]]; then
  "$engine" rmi "$old" >/dev/null 2>&1 || true
fi
size="$("$engine" image inspect --format '{{.Size}}' "$image")"
echo "build-image: built $image ($((size / 1000000)) MB)" >&2
