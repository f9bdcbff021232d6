#!/usr/bin/env bash
# Create (once) the project's virtual environment in .venv and install what the
# package, its tests and notebooks need. Safe to re-run: pip skips what is there.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
if [ ! -x "$root/.venv/bin/python" ]; then
  "$python" -m venv "$root/.venv"
fi
"$root/.venv/bin/python" -m pip install -q --upgrade pip
"$root/.venv/bin/python" -m pip install -q -r "$root/requirements-dev.txt"
"$root/.venv/bin/python" -m pip install -q --no-deps -e "$root"
