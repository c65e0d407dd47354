#!/usr/bin/env bash
# Verify and time every GPU path in one prepared command (benchmarks/gpu_check.py says what
# it checks). About 5-8 minutes on one GPU; on a machine without one it says so in one line,
# runs the CPU halves (the kernel harness against the CPU kernel) and exits 0.
#
#   bash benchmarks/gpu_check.sh OUT_DIR      (default benchmarks/results/gpu)
#
# Python: the checkout's .venv when there is one (scripts/setup.sh), else DEEN_PYTHON or
# python3 with PyTorch installed, as on a GPU machine without network access: nothing is
# installed by this script, and the checks whose packages are missing say so.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/benchmarks/results/gpu}"
python="${DEEN_PYTHON:-}"
if [[ -z "$python" ]]; then
    if [[ -x "$root/.venv/bin/python" ]]; then python="$root/.venv/bin/python"; else python=python3; fi
fi
if ! "$python" -c "import torch" 2>/dev/null; then
    echo "gpu_check: $python has no PyTorch; run scripts/setup.sh or set DEEN_PYTHON" >&2
    exit 1
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$python" "$root/benchmarks/gpu_check.py" "$out"
