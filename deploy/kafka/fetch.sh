#!/usr/bin/env bash
# Fetch the Kafka 4.1.1 broker + tools + log4j2 jars (deploy/kafka/pom.xml) into
# <repo>/build/kafka-lib (or the directory given as $1) with Maven.
#
# Idempotent: does nothing when the directory already holds a complete fetch
# made from the current pom.xml (tracked by a stamp file holding the pom's hash).
# Safe to run concurrently (flock) and never leaves a half-filled directory.
#
# Usage: deploy/kafka/fetch.sh [OUTDIR]      (also sourced by kafka.sh / install-deps.sh)
set -euo pipefail

_fetch_here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
_fetch_repo="$(cd "$_fetch_here/../.." && pwd)"

# kafka_fetch_jars [OUTDIR] -> prints nothing on success, reason on stderr + rc!=0 on failure.
kafka_fetch_jars() {
  local out="${1:-$_fetch_repo/build/kafka-lib}"
  local pom="$_fetch_here/pom.xml"
  local stamp="$out/.fetched"
  local want
  want="$(sha256sum "$pom" | cut -d' ' -f1)"

  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && compgen -G "$out/kafka_2.13-*.jar" >/dev/null; then
    return 0
  fi

  if ! command -v mvn >/dev/null 2>&1; then
    echo "kafka fetch: 'mvn' not found on PATH (install Maven, e.g. deploy/install-deps.sh)" >&2
    return 1
  fi

  local parent
  parent="$(dirname "$out")"
  mkdir -p "$parent"
  (
    # Serialise concurrent fetches into the same OUTDIR.
    exec 8>"$out.lock"
    flock 8
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
      exit 0
    fi
    local tmp
    tmp="$(mktemp -d "$out.tmp.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    echo "kafka fetch: resolving Kafka jars with Maven into $out ..." >&2
    if ! mvn -B -q -Dstyle.color=never -f "$pom" \
          dependency:copy-dependencies -DoutputDirectory="$tmp" >"$tmp.mvn.log" 2>&1; then
      echo "kafka fetch: mvn dependency:copy-dependencies failed:" >&2
      tail -n 40 "$tmp.mvn.log" >&2 || true
      rm -f "$tmp.mvn.log"
      exit 1
    fi
    rm -f "$tmp.mvn.log"
    if ! compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null; then
      echo "kafka fetch: Maven finished but no kafka_2.13 jar was copied" >&2
      exit 1
    fi
    echo "$want" >"$tmp/.fetched"
    rm -rf "$out"
    mv "$tmp" "$out"
    trap - EXIT
  )
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  kafka_fetch_jars "$@"
  echo "${1:-$_fetch_repo/build/kafka-lib}"
fi
