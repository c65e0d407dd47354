"""Backends: load a model artifact and run it, one small class per runtime.

    base.py              the Embedder interface (run on preprocessed batches, embed on images)
    registry.py          open_embedder: model file suffix → backend
    artifact.py          the manifest every export carries (inputs, layout, provenance)
    torch_backend.py     PyTorch (checkpoints)
    onnxrt_backend.py    ONNX Runtime (.onnx)
    openvino_backend.py  OpenVINO (.xml + .bin)
    tensorrt_backend.py  TensorRT (.engine), with tensorrt_env.py (what an engine needs here)

Building artifacts and checking them against PyTorch is :mod:`deen.export`'s job, and the
live pipeline is :mod:`deen.runtime`'s; both use this layer, which imports neither.
"""

from deen.backends.base import Embedder
from deen.backends.registry import MODEL_SUFFIXES, open_embedder

__all__ = ["MODEL_SUFFIXES", "Embedder", "open_embedder"]
