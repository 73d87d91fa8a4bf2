#!/usr/bin/env bash
# Installs what the Go examples need: checks go and protoc, installs the pinned
# protoc-gen-go and protoc-gen-go-grpc (versions.env) into <repo>/build/tools/bin
# and downloads the modules of go.mod. Idempotent; quick when done.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
bin="$repo/build/tools/bin"
export GOTOOLCHAIN=local
# shellcheck source=/dev/null
source "$here/versions.env"

if ! command -v go >/dev/null 2>&1; then
  echo "setup.sh: go not found on PATH; install Go 1.26 or newer (grpc v1.85 needs it)" >&2
  exit 1
fi
if ! command -v protoc >/dev/null 2>&1; then
  echo "setup.sh: protoc not found on PATH (Debian: apt-get install protobuf-compiler)" >&2
  exit 1
fi

mkdir -p "$bin"
exec 9>"$repo/build/go-setup.lock"
flock 9

have_go="$("$bin/protoc-gen-go" --version 2>/dev/null || true)"
have_grpc="$("$bin/protoc-gen-go-grpc" --version 2>/dev/null || true)"
if [[ "$have_go" != "protoc-gen-go $PROTOC_GEN_GO_VERSION" ||
      "$have_grpc" != "protoc-gen-go-grpc ${PROTOC_GEN_GO_GRPC_VERSION#v}" ]]; then
  echo "setup.sh: installing protoc-gen-go $PROTOC_GEN_GO_VERSION and protoc-gen-go-grpc $PROTOC_GEN_GO_GRPC_VERSION into $bin" >&2
  if ! GOBIN="$bin" go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION" ||
     ! GOBIN="$bin" go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"; then
    echo "setup.sh: go install of the protoc plugins failed (is the Go module proxy reachable?)" >&2
    exit 1
  fi
fi

if ! (cd "$here" && go mod download); then
  echo "setup.sh: go mod download failed (is the Go module proxy reachable?)" >&2
  exit 1
fi
