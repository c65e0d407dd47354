#!/usr/bin/env bash
# Set up (if needed, with test tools), lint, and run the test suite; extra arguments go to
# pytest (e.g. -m slow for the slow tests, -k NAME).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh" --dev
cd "$root"
.venv/bin/ruff check deen tests benchmarks
# Two workers (pytest-xdist), one test file each at a time: the suite's subprocesses and
# servers leave a core idle much of the time. DEEN_TEST_WORKERS=0 runs it in one process.
workers="${DEEN_TEST_WORKERS:-2}"
if [ "$workers" = "0" ]; then
  exec .venv/bin/python -m pytest "$@"
fi
exec .venv/bin/python -m pytest -n "$workers" --dist loadfile "$@"
