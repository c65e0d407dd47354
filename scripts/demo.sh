#!/usr/bin/env bash
# Set up (if needed) and run `deen demo`; extra arguments go to the demo.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
exec "$root/.venv/bin/deen" demo "$@"
