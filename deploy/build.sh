#!/usr/bin/env bash
# Configures and builds eventbus into <repo>/build (Release with debug info).
# Usage: deploy/build.sh [--target NAME]... [CMake configure arguments...]
#   --target NAME   build only NAME (repeatable; default: everything)
# Other arguments go to the CMake configure step, e.g. -DEVENTBUS_ASAN=ON.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
targets=()
configure=()
while [[ $# -gt 0 ]]; do
  if [[ "$1" == --target && $# -ge 2 ]]; then
    targets+=(--target "$2")
    shift 2
  else
    configure+=("$1")
    shift
  fi
done
cmake -S "$REPO" -B "$REPO/build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${configure[@]}" >/dev/null
cmake --build "$REPO/build" -j"$(nproc)" "${targets[@]}"
