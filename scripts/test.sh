#!/usr/bin/env bash
# The test command: install into .venv, then run the whole test suite on the
# TensorFlow backend, and the layer tests plus a train/detect smoke on JAX.
# Arguments go to the TensorFlow run only (e.g. `bash scripts/test.sh -k nms`), which
# then skips the JAX run. Test files run in parallel, whole files on one worker each
# (pytest-xdist); TEST_WORKERS sets how many (default 2, this project's CI cores).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh"
cd "$root"
export TF_CPP_MIN_LOG_LEVEL=2 MPLBACKEND=Agg
# The tests that run on every backend (tests/backend.py skips TensorFlow-only cases).
jax_tests=(tests/test_graph_ops.py tests/test_roi_align.py tests/test_proposal.py
           tests/test_detection.py tests/test_detection_targets.py tests/test_heads.py
           tests/test_wiring.py tests/test_box_ops.py tests/test_losses.py tests/test_backends.py)
# --no-loadscope-reorder: files in collection order (tests/conftest.py puts the slowest first).
parallel=(-n "${TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder)
status=0
.venv/bin/python -m pytest -q "${parallel[@]}" --durations=15 "$@" tests || status=$?
if [ $# -eq 0 ]; then
  echo "--- the same layers and a train/detect smoke on KERAS_BACKEND=jax ---"
  KERAS_BACKEND=jax JAX_PLATFORMS=cpu .venv/bin/python -m pytest -q -p no:warnings "${parallel[@]}" --durations=10 \
    "${jax_tests[@]}" || status=$?
fi
exit "$status"
