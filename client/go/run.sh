#!/usr/bin/env bash
# Usage: client/go/run.sh publisher|subscriber ARGS...
# Runs setup.sh, generates the stubs into client/go/gen/eventbus/v1 when the
# proto or the generators changed, builds into <repo>/build/go/bin and runs.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
bin="$repo/build/tools/bin"
out="$repo/build/go/bin"
gen="$here/gen/eventbus/v1"
proto="eventbus/v1/eventbus.proto"
module="eventbus.dev/examples/go"
export GOTOOLCHAIN=local

usage() { echo "usage: client/go/run.sh publisher|subscriber ARGS... (-help for the program's arguments)" >&2; exit 2; }
[[ $# -ge 1 ]] || usage
prog="$1"; shift
case "$prog" in
  publisher|subscriber) ;;
  *) usage ;;
esac

"$here/setup.sh"

mkdir -p "$out"
exec 9>"$repo/build/go-run.lock"
flock 9
want="$(cat "$repo/proto/$proto" "$here/versions.env" | sha256sum | cut -d' ' -f1)"
if [[ ! -f "$gen/.stamp" || "$(cat "$gen/.stamp")" != "$want" ]]; then
  rm -f "$gen"/*.pb.go
  # The M options put the package in this module, whatever the proto's go_package says.
  PATH="$bin:$PATH" protoc -I"$repo/proto" \
    --go_out="$here/gen" --go_opt=paths=source_relative \
    --go_opt="M$proto=$module/gen/eventbus/v1;eventbusv1" \
    --go-grpc_out="$here/gen" --go-grpc_opt=paths=source_relative \
    --go-grpc_opt="M$proto=$module/gen/eventbus/v1;eventbusv1" \
    "$proto"
  echo "$want" >"$gen/.stamp"
fi
(cd "$here" && go build -o "$out/$prog" "./cmd/$prog")
exec 9>&-
exec "$out/$prog" "$@"
