"""Backends: load a model artifact and run it, one small class per runtime.

    base.py              the Embedder interface (run on preprocessed batches, embed on images)
    registry.py          open_embedder: model file → backend, by the format table
    artifact.py          the manifest every export carries (inputs, layout, provenance)
    torch_backend.py     PyTorch (checkpoints)
    onnxrt_backend.py    ONNX Runtime (.onnx)
    openvino_backend.py  OpenVINO (.xml + .bin)
    tensorrt_backend.py  TensorRT (.engine), with tensorrt_env.py (what an engine needs here)

Which suffix belongs to which backend is :mod:`deen.formats`' row for it. Building
artifacts and checking them against PyTorch is :mod:`deen.export`'s job, and the live
pipeline is :mod:`deen.runtime`'s; both use this layer, which imports neither.
"""

from deen.backends.base import Embedder
from deen.backends.registry import model_suffixes, open_embedder

__all__ = ["Embedder", "model_suffixes", "open_embedder"]
