#!/usr/bin/env bash
# Set up (if needed, with test tools), lint, and run the test suite; extra arguments go to
# pytest (e.g. -m slow for the slow tests, -k NAME).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh" --dev
cd "$root"
.venv/bin/ruff check deen tests benchmarks
exec .venv/bin/python -m pytest "$@"
