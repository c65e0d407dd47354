"""Traced ONNX graphs kept by what they were traced from, so that tracing is paid once.

``torch.onnx.export`` (dynamo) spends 10-20 s of CPU tracing and decomposing a ResNet-50,
whatever the input size, and the same network is often traced several times: a script comparing
int8 recipes, or a test suite, exports one checkpoint many ways. A graph depends only on the
network's weights, its embedding settings, the opset, the input size, the DEE path and the code
and libraries that trace it; the key is a SHA-256 over all of these. With ``DEEN_TRACE_CACHE``
naming a folder, graphs are kept there as ``<key>.onnx`` (written whole or not at all); without
it nothing is kept. A kept graph is never trusted blindly: every export, from a kept graph or
a new trace, is still verified against PyTorch before its file is published.
"""

from __future__ import annotations

import functools
import hashlib
import os
from importlib import metadata
from pathlib import Path

import torch

from deen.fileio import atomic_path

__all__ = ["ENV", "TraceCache", "trace_key"]

#: The environment variable naming the folder where traced graphs are kept across processes.
ENV = "DEEN_TRACE_CACHE"

_PACKAGE = Path(__file__).resolve().parents[1]
#: The code whose change changes a traced graph: the network, the embedding, the custom
#: operator's translation and the tracing call itself.
_TRACED_CODE = ("models", "ops", "embedding.py", "preprocess.py", "export/onnx_export.py")
_LIBRARIES = ("torch", "onnx", "onnxscript")


@functools.cache
def _code_digest() -> bytes:
    """SHA-256 of the tracing code and library versions (fixed for a process's life)."""
    digest = hashlib.sha256()
    for entry in _TRACED_CODE:
        path = _PACKAGE / entry
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(file.relative_to(_PACKAGE).as_posix().encode())
            digest.update(file.read_bytes())
    for name in _LIBRARIES:
        try:
            digest.update(f"{name}=={metadata.version(name)}".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{name} absent".encode())
    return digest.digest()


def trace_key(network: torch.nn.Module, settings: dict[str, object]) -> str:
    """SHA-256 of the network's tensors (names, types, shapes, values), ``settings`` and the
    tracing code and libraries."""
    digest = hashlib.sha256(_code_digest())
    digest.update(repr(sorted(settings.items())).encode())
    for name, tensor in network.state_dict().items():
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(flat.view(torch.uint8).numpy())  # the buffer itself, not a copy
    return digest.hexdigest()


class TraceCache:
    """Traced graphs kept in ``folder`` (by default the folder ``DEEN_TRACE_CACHE`` names when
    the cache is used; none: nothing is kept). Nothing is held in memory: a process that
    measures its own memory (``deen bench``) sees only what it measures."""

    def __init__(self, folder: Path | None = None) -> None:
        self._folder = folder

    @property
    def folder(self) -> Path | None:
        if self._folder is not None:
            return self._folder
        value = os.environ.get(ENV)
        return Path(value) if value else None

    def get(self, key: str) -> bytes | None:
        folder = self.folder
        if folder is None:
            return None
        try:
            return (folder / f"{key}.onnx").read_bytes()
        except OSError:
            return None

    def put(self, key: str, data: bytes) -> None:
        folder = self.folder
        if folder is None:
            return
        try:
            with atomic_path(folder / f"{key}.onnx") as tmp:
                tmp.write_bytes(data)
        except OSError:
            pass  # a cache that cannot be written costs a later trace, nothing else
