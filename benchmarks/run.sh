#!/usr/bin/env bash
# One command for the torchvision comparison (issue 8):  bash benchmarks/run.sh [options]
# Creates .venv-bench (torch + torchvision, kept out of the main requirements) if missing,
# then runs benchmarks/compare_torchvision.py with the main .venv. Options pass through
# (e.g. --rounds 1 --allocators glibc-default).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-bench/bin/python ]; then
    python3 -m venv .venv-bench
    .venv-bench/bin/pip install torch==2.14.1 torchvision==0.29.1
fi
exec .venv/bin/python benchmarks/compare_torchvision.py "$@"
