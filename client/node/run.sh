#!/usr/bin/env bash
# usage: client/node/run.sh publisher|subscriber ARGS...
# Installs the dependencies if needed, then runs the program.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() {
  echo "usage: $0 publisher --address ADDR --topic T --count N [--run-id R]" >&2
  echo "       $0 subscriber --address ADDR --topic T --group G --count N [--timeout-seconds S]" >&2
  exit 2
}
[ $# -ge 1 ] || usage
case "$1" in
  publisher|subscriber) program="$1" ;;
  *) usage ;;
esac
shift

"$here/setup.sh"
exec node "$here/$program.js" "$@"
