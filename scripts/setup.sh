#!/usr/bin/env bash
# Creates .venv in the checkout (if missing) and installs deen with what it needs.
# Safe to re-run: pip skips what is already installed. Usage: scripts/setup.sh [--dev]
#
# PyTorch: the CPU build is installed first, pinned, so that nothing later pulls the CUDA
# build and its several GB of packages. A local wheel folder (DEEN_WHEELS, default
# /opt/wheels) is used when present; DEEN_TORCH_INDEX may name a PyTorch CPU package index.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
python="${PYTHON:-python3}"
torch_version="${DEEN_TORCH_VERSION:-2.13.0}"
wheels="${DEEN_WHEELS:-/opt/wheels}"

if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating $venv"
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
torch_source=()
[ -d "$wheels" ] && torch_source+=(--find-links "$wheels")
[ -n "${DEEN_TORCH_INDEX:-}" ] && torch_source+=(--extra-index-url "$DEEN_TORCH_INDEX")

if ! "$venv/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$torch_version')" 2>/dev/null; then
  echo "setup: installing torch==$torch_version (CPU build)"
  "${pip[@]}" "${torch_source[@]}" "torch==$torch_version"
fi
extra=""
[ "${1:-}" = "--dev" ] && extra="[dev]"
echo "setup: installing deen$extra"
"${pip[@]}" "${torch_source[@]}" -e "$root$extra"
# TrackEval (deen score's HOTA, IDF1, MOTA) without its dependencies: it requires the GUI
# build opencv-python, which would overwrite opencv-python-headless's cv2 with a 5.x build
# that has no HOG people detector. Its metrics need only NumPy, SciPy and tabulate.
if ! "$venv/bin/python" -c "import trackeval" >/dev/null 2>&1; then
  echo "setup: installing trackeval (metrics only, without its GUI OpenCV)"
  "${pip[@]}" --no-deps "trackeval==1.3.0"
fi
# Real programs the tests start (each test skips with the reason when its program is
# absent): Debian's Chromium for the web view's browser test, Mosquitto for events on a
# message broker, PostgreSQL for the shared gallery.
if [ "${1:-}" = "--dev" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
  missing=()
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  [ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null 2>&1 || missing+=(mosquitto)
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    { apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 &&
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; }; } ||
      echo "setup: warning: ${missing[*]} did not install; their tests will skip" >&2
  fi
fi
# The model server's own environment (deen serve): PyTriton's Triton Inference Server needs
# NumPy 1.x, deen needs 2.x, so the server gets its own venv with ONNX Runtime beside it.
if [ "${1:-}" = "--dev" ] || [ "${1:-}" = "--serve" ]; then
  serve_venv="$root/.venv-serve"
  if ! "$serve_venv/bin/python" -c "import pytriton, onnxruntime" >/dev/null 2>&1; then
    echo "setup: installing the model server (PyTriton's Triton Inference Server) in $serve_venv"
    [ -x "$serve_venv/bin/python" ] || "$python" -m venv "$serve_venv"
    "$serve_venv/bin/python" -m pip install --quiet --disable-pip-version-check \
      "nvidia-pytriton>=0.5" onnxruntime ||
      echo "setup: warning: the model server did not install; deen serve and its tests are unavailable" >&2
  fi
fi
# The native operator library (cpp_ext/: fused DEE kernel, ONNX Runtime custom op). Optional:
# without a C++ compiler everything else works and the custom-op tests skip with the reason.
if ! "$venv/bin/python" -m deen build-ops; then
  echo "setup: warning: the native ops did not build; deen export --dee-op custom and the fused DEE path are unavailable" >&2
fi
