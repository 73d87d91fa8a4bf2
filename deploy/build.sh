#!/usr/bin/env bash
# Configures and builds eventbus into <repo>/build (Release with debug info).
# Extra arguments go to the CMake configure step, e.g. -DEVENTBUS_ASAN=ON.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cmake -S "$REPO" -B "$REPO/build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$REPO/build" -j"$(nproc)"
