#!/usr/bin/env bash
# Usage: client/python/run.sh publisher|subscriber ARGS...
# Sets up the virtualenv (setup.sh), generates the stubs from proto/ into
# <repo>/build/python-gen when the proto or the pins changed, and runs the program.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="$repo/build/python-venv"
gen="$repo/build/python-gen"
proto="eventbus/v1/eventbus.proto"

usage() { echo "usage: client/python/run.sh publisher|subscriber ARGS... (--help for the program's arguments)" >&2; exit 2; }
[[ $# -ge 1 ]] || usage
prog="$1"; shift
case "$prog" in
  publisher|subscriber) ;;
  *) usage ;;
esac

"$here/setup.sh"

(
  exec 9>"$repo/build/python-gen.lock"
  flock 9
  want="$(cat "$repo/proto/$proto" "$here/requirements.txt" | sha256sum | cut -d' ' -f1)"
  if [[ ! -f "$gen/.stamp" || "$(cat "$gen/.stamp")" != "$want" ]]; then
    tmp="$(mktemp -d "$repo/build/python-gen.XXXXXX")"
    "$venv/bin/python" -m grpc_tools.protoc -I"$repo/proto" \
      --python_out="$tmp" --grpc_python_out="$tmp" "$proto"
    echo "$want" >"$tmp/.stamp"
    rm -rf "$gen"
    mv "$tmp" "$gen"
  fi
)

export PYTHONPATH="$gen${PYTHONPATH:+:$PYTHONPATH}"
exec "$venv/bin/python" "$here/$prog.py" "$@"
