#!/usr/bin/env bash
# The test command: install into .venv, then run the whole test suite.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh"
cd "$root"
export TF_CPP_MIN_LOG_LEVEL=2 MPLBACKEND=Agg
exec .venv/bin/python -m pytest -q --durations=15 "$@" tests
