#!/usr/bin/env bash
# Builds the fuzz targets of tests/fuzz with clang as libFuzzer binaries, with
# ASan and UBSan (in build/fuzz), then runs each for SECONDS (default 30) on
# a scratch copy of its seed corpus, one after the other.
#
# Exits non-zero when a target crashes, leaks, fails a sanitizer check or
# times out on an input: it prints the path of that input and the end of the
# fuzzer's report, and still runs the other targets. New inputs the fuzzers
# find go to build/fuzz/corpus/<name>/ (kept between runs), crash inputs to
# build/fuzz/artifacts/, logs to build/fuzz/logs/; nothing is written under
# tests/. Once the bug is fixed, add the crash input to
# tests/fuzz/corpus/<name>/ so that fuzz_replay_<name> keeps it fixed.
#
# Needs clang, compiler-rt and llvm-symbolizer (deploy/install-deps.sh
# installs them) and the libraries deploy/install-deps.sh builds.
#
# Usage: deploy/fuzz.sh [SECONDS] [NAME...]
#   NAME: a target, as in tests/fuzz/NAME_fuzzer.cc (default: all of them)
# Reproduce a crash: build/fuzz/tests/fuzz/NAME_fuzzer CRASH_INPUT
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
BUILD="$REPO/build/fuzz"
FUZZ_SRC="$REPO/tests/fuzz"

die() {
  echo "fuzz: ERROR: $*" >&2
  exit 1
}
step() { echo "fuzz: $*" >&2; }

SECONDS_PER_TARGET="${1:-30}"
[[ "$SECONDS_PER_TARGET" =~ ^[1-9][0-9]*$ ]] || die "SECONDS must be a positive integer, not '$SECONDS_PER_TARGET' (usage: deploy/fuzz.sh [SECONDS] [NAME...])"
shift $(($# > 0 ? 1 : 0))

ALL=()
for f in "$FUZZ_SRC"/*_fuzzer.cc; do
  [[ -e "$f" ]] || continue
  f="$(basename "$f")"
  ALL+=("${f%_fuzzer.cc}")
done
((${#ALL[@]} > 0)) || die "no fuzz targets in $FUZZ_SRC"
NAMES=("$@")
((${#NAMES[@]} > 0)) || NAMES=("${ALL[@]}")
for name in "${NAMES[@]}"; do
  [[ -f "$FUZZ_SRC/${name}_fuzzer.cc" ]] || die "no fuzz target '$name' (there are: ${ALL[*]})"
done

# ------------------------------------------------------------ toolchain
for tool in clang clang++ cmake ninja; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found (run deploy/install-deps.sh)"
done
probe="$(mktemp -d)"
trap 'rm -rf "$probe"' EXIT
echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' >"$probe/probe.cc"
clang++ -fsanitize=fuzzer,address,undefined "$probe/probe.cc" -o "$probe/probe" >"$probe/log" 2>&1 || {
  cat "$probe/log" >&2
  die "clang++ cannot link a libFuzzer target (the libFuzzer runtime is in Debian's libclang-rt-14-dev; run deploy/install-deps.sh)"
}
if [[ -z "${ASAN_SYMBOLIZER_PATH:-}" ]] && ! command -v llvm-symbolizer >/dev/null 2>&1; then
  step "warning: llvm-symbolizer not found: reports will show addresses, not lines (Debian package llvm)"
fi

# ------------------------------------------------------------ build
cmake_args=(-S "$REPO" -B "$BUILD" -G Ninja
  -DCMAKE_BUILD_TYPE=RelWithDebInfo
  -DCMAKE_CXX_COMPILER=clang++
  -DEVENTBUS_FUZZ=ON)
# The libraries deploy/install-deps.sh builds (librdkafka), where the main
# build finds them.
if grep -q 'EVENTBUS_DEPS_PREFIX' "$REPO/CMakeLists.txt"; then
  cmake_args+=("-DEVENTBUS_DEPS_PREFIX=$REPO/build/deps")
fi
start=$SECONDS
step "configuring $BUILD (clang, libFuzzer, ASan, UBSan)"
CC=clang CXX=clang++ cmake "${cmake_args[@]}" >"$probe/configure.log" 2>&1 || {
  tail -n 30 "$probe/configure.log" >&2
  die "cmake configure of $BUILD failed"
}
targets=()
for name in "${NAMES[@]}"; do targets+=("${name}_fuzzer"); done
step "building ${targets[*]}"
cmake --build "$BUILD" --target "${targets[@]}" || die "building the fuzz targets failed"
step "configure and build took $((SECONDS - start)) s"

# ------------------------------------------------------------ run
mkdir -p "$BUILD/corpus" "$BUILD/artifacts" "$BUILD/logs"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
failed=()
for name in "${NAMES[@]}"; do
  bin="$BUILD/tests/fuzz/${name}_fuzzer"
  corpus="$BUILD/corpus/$name"
  log="$BUILD/logs/$name.log"
  mkdir -p "$corpus"
  if [[ -d "$FUZZ_SRC/corpus/$name" ]]; then
    find "$FUZZ_SRC/corpus/$name" -maxdepth 1 -type f -exec cp -f {} "$corpus"/ \;
  fi
  marker="$probe/before-$name"
  touch "$marker"
  step "running $name for ${SECONDS_PER_TARGET} s (corpus $corpus, log $log)"
  start=$SECONDS
  rc=0
  "$bin" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$BUILD/artifacts/$name-" \
    "$corpus" >"$log" 2>&1 || rc=$?
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)"
  cov="$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[^ ]+' "$log" | tail -n1 || true)"
  if ((rc == 0)); then
    step "$name: no crash: ${runs:-?} inputs in $((SECONDS - start)) s (${cov:-no stats})"
    continue
  fi
  failed+=("$name")
  echo "fuzz: $name FAILED (exit $rc) after $((SECONDS - start)) s; input(s):" >&2
  found=0
  while IFS= read -r artifact; do
    echo "  $artifact" >&2
    found=1
  done < <(find "$BUILD/artifacts" -maxdepth 1 -type f -name "$name-*" -newer "$marker" | sort)
  ((found)) || echo "  (none written; see $log)" >&2
  echo "---- end of $log ----" >&2
  tail -n 60 "$log" >&2
  echo "----" >&2
done

if ((${#failed[@]} > 0)); then
  die "${#failed[@]} fuzz target(s) failed: ${failed[*]} (reproduce: $BUILD/tests/fuzz/NAME_fuzzer INPUT)"
fi
step "all ${#NAMES[@]} targets ran ${SECONDS_PER_TARGET} s each without a crash"
