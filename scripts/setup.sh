#!/usr/bin/env bash
# Create .venv and install MedUI's dependencies. Usage: scripts/setup.sh [test]
# Re-runs are cheap: a stamp file records what was installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  echo "MedUI needs Python 3.11 or newer (found: $("$PY" --version 2>&1)). Set PYTHON=/path/to/python3.11." >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  if ! "$PY" -m venv .venv; then
    echo "Could not create a virtual environment. On Debian/Ubuntu: sudo apt-get install python3-venv" >&2
    exit 1
  fi
fi
want="requirements.txt"
[ "${1:-}" = "test" ] && want="$want requirements-test.txt"
gpu=""
if [ "${MEDUI_GPU:-auto}" != "0" ] && command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  gpu="tensorflow[and-cuda]==2.21.0"
fi
stamp=".venv/.medui-installed"
sig="$(cat $want | sha1sum | cut -c1-12) $gpu"
if [ -f "$stamp" ] && grep -qxF -- "$sig" "$stamp"; then
  exit 0
fi
.venv/bin/python -m pip install -q --upgrade pip
args=()
for f in $want; do args+=(-r "$f"); done
.venv/bin/python -m pip install -q "${args[@]}" ${gpu:+"$gpu"}
echo "$sig" > "$stamp"
