#!/usr/bin/env bash
# Set up (if needed, with test tools), lint, and run the test suite; arguments, if any, go to
# pytest (e.g. -m slow for the slow tests, -k NAME).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh" --dev
cd "$root"
.venv/bin/ruff check deen tests benchmarks
if [ $# -gt 0 ]; then
  exec .venv/bin/python -m pytest "$@"
fi
# Both parts share one folder of work done once per run (see tests/conftest.py).
DEEN_TEST_SHARED="$(mktemp -d "${TMPDIR:-/tmp}/deen-test-shared-XXXXXX")"
export DEEN_TEST_SHARED
trap 'rm -rf "$DEEN_TEST_SHARED"' EXIT
# The suite in two parts. First everything that does not time itself, in two processes,
# each with one compute thread (threads beyond the cores only wait on each other; PASSIVE
# stops idle OpenMP threads from spinning on a core another test needs). Then the tests
# marked serial, which assert how fast something happens, alone on the machine.
status=0
OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE .venv/bin/python -m pytest -n 2 --dist loadfile \
  -m "not slow and not serial" || status=$?
.venv/bin/python -m pytest -m "serial and not slow" || status=$?
exit $status
