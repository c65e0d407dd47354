"""Building and loading the project's native library (``cpp_ext/``).

One shared library, ``libdeen_ops.so``, holds the CPU kernel of the fused DEE convolution
(called from PyTorch through :mod:`ctypes`) and the ONNX Runtime custom-op entry point
``RegisterCustomOps`` (loaded by ONNX Runtime itself). It has no dependency on PyTorch's or
ONNX Runtime's headers, so it builds in seconds with the system C++ compiler; ``deen
build-ops`` (run by ``scripts/setup.sh``) builds it, and :func:`library` builds it on first
use when it is missing or older than its sources. ``-march=native``: the library is built on
the machine that runs it. The CUDA kernels (``libdeen_ops_cuda.so``) are built by nvcc when
a CUDA GPU and nvcc are both present.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import threading
from pathlib import Path

from deen.errors import DeenError

SOURCE_DIR = Path(__file__).resolve().parents[2] / "cpp_ext"
BUILD_DIR = Path(os.environ.get("DEEN_BUILD_DIR", SOURCE_DIR.parent / "build" / "native"))
CPU_SOURCES = ("dee_conv_cpu.cc", "ort_custom_op.cc")
CUDA_SOURCES = ("dee_conv_cuda.cu",)
HEADERS = ("dee_conv.h", "ort_abi.h")
_lock = threading.Lock()
_loaded: dict[str, ctypes.CDLL] = {}


def library_path(cuda: bool = False) -> Path:
    return BUILD_DIR / ("libdeen_ops_cuda.so" if cuda else "libdeen_ops.so")


def _stale(target: Path, sources: tuple[str, ...]) -> bool:
    if not target.exists():
        return True
    built = target.stat().st_mtime
    return any((SOURCE_DIR / s).stat().st_mtime > built for s in (*sources, *HEADERS))


def _compile(command: list[str], target: Path) -> None:
    """Run ``command`` (which writes ``target``'s temporary name), then move it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(command, capture_output=True, text=True, cwd=SOURCE_DIR)
    tmp = Path(command[command.index("-o") + 1])
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise DeenError(f"building {target.name} failed: {detail[0] if detail else 'no output'}"
                        f" (command: {' '.join(command)})")
    os.replace(tmp, target)


def cpu_build_command(output: Path) -> list[str]:
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        raise DeenError("building the native ops needs a C++ compiler (g++); none found")
    return [compiler, "-O3", "-march=native", "-std=c++17", "-fPIC", "-shared", "-pthread",
            "-fvisibility=hidden", *CPU_SOURCES, "-o", str(output)]


def cuda_build_command(output: Path, arch: str = "native") -> list[str]:
    nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    return [nvcc, "-O3", f"-arch={arch}", "-std=c++17", "-Xcompiler", "-fPIC", "-shared",
            *CUDA_SOURCES, "-o", str(output)]


def build(cuda: bool = False, force: bool = False) -> Path:
    """Build the CPU library (or the CUDA one) if missing or out of date; return its path."""
    if not SOURCE_DIR.is_dir():
        raise DeenError(f"{SOURCE_DIR}: the native sources are missing (deen must be installed "
                        "from a checkout, e.g. pip install -e .)")
    target = library_path(cuda)
    sources = CUDA_SOURCES if cuda else CPU_SOURCES
    with _lock:
        if force or _stale(target, sources):
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            _compile(cuda_build_command(tmp) if cuda else cpu_build_command(tmp), target)
    return target


def library(cuda: bool = False) -> ctypes.CDLL:
    """The loaded native library, built first when needed."""
    key = "cuda" if cuda else "cpu"
    if key not in _loaded:
        path = build(cuda)
        lib = ctypes.CDLL(str(path))
        if cuda:
            fn = lib.deen_dee_conv_cuda
            fn.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int64] * 5 + [ctypes.c_int,
                                                                           ctypes.c_void_p]
        else:
            fn = lib.deen_dee_conv_f32
            fn.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int64] * 5 + [ctypes.c_int]
        fn.restype = ctypes.c_int
        _loaded[key] = lib
    return _loaded[key]


def available(cuda: bool = False) -> str | None:
    """None when the library can be built and loaded, else why not (for skips and errors)."""
    try:
        library(cuda)
    except (DeenError, OSError) as exc:
        return str(exc)
    return None
