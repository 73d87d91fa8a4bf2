#!/usr/bin/env bash
# Installs the Node client's dependencies (npm ci, from package-lock.json) into
# client/node/node_modules. Idempotent: quick when they are already installed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "setup.sh: node and npm are required (Node 18 or newer), e.g. apt-get install nodejs npm" >&2
  exit 1
fi
major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$major" -lt 18 ]; then
  echo "setup.sh: Node 18 or newer is required, found $(node --version)" >&2
  exit 1
fi

# The stamp records the lock file that was installed; npm ci only when it changed.
stamp="node_modules/.eventbus-setup-stamp"
want="$(cat package.json package-lock.json | cksum)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "setup.sh: installing Node dependencies (npm ci)" >&2
if ! npm ci --no-audit --no-fund --loglevel=error >&2; then
  echo "setup.sh: npm ci failed in $here" >&2
  exit 1
fi
printf '%s\n' "$want" > "$stamp"
