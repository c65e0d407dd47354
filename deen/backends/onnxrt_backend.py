"""ONNX Runtime embedder: runs a graph written by ``deen export --engine onnx``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from deen.backends.artifact import (
    INPUT_IMAGES,
    INPUT_MODALITY,
    METADATA_KEY,
    OUTPUT_EMBEDDING,
    manifest_path_for,
    parse_manifest,
)
from deen.backends.base import Embedder, validated_batch
from deen.backends.devices import check_onnxruntime_session, onnxruntime_providers
from deen.errors import DeenError, first_line


class OnnxRuntimeEmbedder(Embedder):
    backend = "onnxruntime"

    def __init__(self, path: str | os.PathLike[str], *, device: str | None = None,
                 session_options: ort.SessionOptions | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DeenError(f"{self.path}: no such ONNX file")
        providers = onnxruntime_providers(device)  # before the model loads
        session_options = self._with_custom_ops(session_options)
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=session_options, providers=providers
            )
        except Exception as exc:  # onnxruntime raises its own exception types per failure
            raise DeenError(f"{self.path}: not a loadable ONNX model: {first_line(exc)}") from exc
        check_onnxruntime_session(device, self.session.get_providers())
        self.manifest = self._read_manifest()
        self.adopt(self.manifest)
        names = {i.name for i in self.session.get_inputs()}
        if names != {INPUT_IMAGES, INPUT_MODALITY}:
            raise DeenError(f"{self.path}: inputs are {sorted(names)}, expected "
                            f"{INPUT_IMAGES!r} and {INPUT_MODALITY!r}")

    def _with_custom_ops(self, options: ort.SessionOptions | None) -> ort.SessionOptions | None:
        """Registers the project's custom-op library when the graph has a DeeConv node
        (``deen export --dee-op custom``); other graphs load without it."""
        from deen.ops.onnx_custom import uses_custom_ops

        try:
            needed = uses_custom_ops(self.path)
        except Exception:  # not parseable: let ONNX Runtime report why, below
            return options
        if not needed:
            return options
        from deen.ops import native

        options = options or ort.SessionOptions()
        options.register_custom_ops_library(str(native.build()))
        return options

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def _read_manifest(self) -> dict:
        text = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if text is not None:
            return parse_manifest(text, str(self.path))
        sidecar = manifest_path_for(self.path)
        if sidecar.is_file():
            return parse_manifest(sidecar.read_text(), str(sidecar))
        raise DeenError(f"{self.path}: not a deen export (no {METADATA_KEY!r} metadata and "
                        f"no {sidecar.name})")

    def run(self, images: np.ndarray, modality: np.ndarray) -> np.ndarray:
        images, modality = validated_batch(images, modality, self.input_size)
        (out,) = self.session.run(
            [OUTPUT_EMBEDDING], {INPUT_IMAGES: images, INPUT_MODALITY: modality}
        )
        return out
