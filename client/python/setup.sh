#!/usr/bin/env bash
# Installs what the Python examples need: a virtualenv in <repo>/build/python-venv
# with the pinned packages of requirements.txt. Idempotent; quick when done.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="$repo/build/python-venv"
stamp="$venv/.eventbus-requirements.sha256"
python="${PYTHON:-python3}"

mkdir -p "$repo/build"
# One setup at a time (publisher and subscriber may start together).
exec 9>"$repo/build/python-venv.lock"
flock 9

want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi

if ! command -v "$python" >/dev/null 2>&1; then
  echo "setup.sh: $python not found; install Python 3.9 or newer (Debian: apt-get install python3 python3-venv)" >&2
  exit 1
fi
if [[ ! -x "$venv/bin/python" ]]; then
  echo "setup.sh: creating virtualenv $venv" >&2
  if ! "$python" -m venv "$venv"; then
    echo "setup.sh: '$python -m venv' failed (Debian: apt-get install python3-venv)" >&2
    rm -rf "$venv"
    exit 1
  fi
fi
echo "setup.sh: installing client/python/requirements.txt" >&2
if ! "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$here/requirements.txt"; then
  echo "setup.sh: pip install of client/python/requirements.txt failed (is the package index reachable?)" >&2
  exit 1
fi
echo "$want" >"$stamp"
echo "setup.sh: Python examples ready ($venv)" >&2
