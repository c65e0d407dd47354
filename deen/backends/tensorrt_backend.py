"""TensorRT embedder: runs an engine written by ``deen export --engine trt``.

Before deserialising, the engine's manifest (``FILE.engine.json``) is checked against the
running TensorRT and GPU and its plugins are registered. Device buffers are PyTorch CUDA
tensors on a PyTorch CUDA stream (no pycuda); batches above the engine profile's maximum
are split. Written against the TensorRT 10 Python API.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from deen.backends.artifact import (
    INPUT_IMAGES,
    INPUT_MODALITY,
    OUTPUT_EMBEDDING,
    manifest_path_for,
    parse_manifest,
)
from deen.backends.base import Embedder, validated_batch
from deen.backends.tensorrt_env import check_engine_manifest, require_tensorrt, split_batches
from deen.embedding import EmbeddingConfig
from deen.errors import DeenError


def read_engine_manifest(path: Path) -> dict:
    sidecar = manifest_path_for(path)
    if not sidecar.is_file():
        raise DeenError(f"{path}: no manifest {sidecar.name} beside it (engines that deen "
                        "exports have one)")
    return parse_manifest(sidecar.read_text(), str(sidecar))


class TensorRTEmbedder(Embedder):
    backend = "tensorrt"

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, config: EmbeddingConfig | None = None,
             variant: str | None = None, device: str | None = None) -> TensorRTEmbedder:
        """An engine runs on the GPU it was built for; ``device`` is not a choice."""
        return cls(path)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DeenError(f"{self.path}: no such engine file")
        self.manifest = read_engine_manifest(self.path)
        trt = require_tensorrt()
        import torch

        self._torch = torch
        device = torch.cuda.current_device()
        check_engine_manifest(self.manifest, trt.__version__,
                              torch.cuda.get_device_name(device),
                              torch.cuda.get_device_capability(device), self.path)
        for plugin in self.manifest["tensorrt"].get("plugins", []):
            from deen.ops import trt_plugin

            if plugin.get("name") == trt_plugin.PLUGIN_ID:
                trt_plugin.register()
        logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(logger)
        if self.manifest["tensorrt"]["build"].get("version_compatible"):
            self._runtime.engine_host_code_allowed = True
        self._engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self._engine is None:
            raise DeenError(f"{self.path}: TensorRT could not deserialise the engine")
        self._context = self._engine.create_execution_context()
        self._stream = torch.cuda.Stream()
        self.adopt(self.manifest)
        self.max_batch = int(self.manifest["profile"]["max_batch"])

    def _run_chunk(self, images: np.ndarray, modality: np.ndarray) -> np.ndarray:
        torch = self._torch
        x = torch.from_numpy(images).cuda(non_blocking=True)
        m = torch.from_numpy(modality).cuda(non_blocking=True)
        out = torch.empty((len(images), self.dim), dtype=torch.float32, device="cuda")
        context = self._context
        context.set_input_shape(INPUT_IMAGES, tuple(x.shape))
        context.set_input_shape(INPUT_MODALITY, tuple(m.shape))
        for name, tensor in ((INPUT_IMAGES, x), (INPUT_MODALITY, m), (OUTPUT_EMBEDDING, out)):
            context.set_tensor_address(name, tensor.data_ptr())
        self._stream.wait_stream(torch.cuda.current_stream())
        if not context.execute_async_v3(self._stream.cuda_stream):
            raise DeenError(f"{self.path}: TensorRT execution failed")
        self._stream.synchronize()
        return out.cpu().numpy()

    def run(self, images: np.ndarray, modality: np.ndarray) -> np.ndarray:
        images, modality = validated_batch(images, modality, self.input_size)
        parts = [self._run_chunk(images[a:b], modality[a:b])
                 for a, b in split_batches(len(images), self.max_batch)]
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)

