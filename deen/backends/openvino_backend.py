"""OpenVINO embedder: runs an IR (``FILE.xml`` + ``FILE.bin``) written by
``deen export --engine openvino``.

The IR carries the export manifest in its runtime info (``deen_manifest``), and a copy sits
beside it (``FILE.xml.json``). The manifest's ``inference_precision`` is passed to OpenVINO
explicitly: on CPUs with bf16 instructions OpenVINO would otherwise pick bf16 for an fp32
model by itself, and an fp32 export must compute in fp32 wherever it runs. Each embedder owns
its ``ov.Core`` and one infer request; nothing is global.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from deen.backends.artifact import (
    INPUT_IMAGES,
    INPUT_MODALITY,
    OUTPUT_EMBEDDING,
    manifest_path_for,
    parse_manifest,
)
from deen.backends.base import Embedder, validated_batch
from deen.backends.devices import openvino_device
from deen.errors import DeenError, first_line
from deen.fileio import sha256_file

#: Where the manifest lives in the IR's runtime info.
RT_INFO_KEY = "deen_manifest"
#: OpenVINO's names for the inference precisions an export may ask for.
INFERENCE_PRECISIONS = {"fp32": "f32", "bf16": "bf16"}


def weights_path_for(xml: Path) -> Path:
    """``model.xml`` → ``model.bin``, the weights file OpenVINO reads beside it."""
    return xml.with_suffix(".bin")


def read_ir(core: Any, xml: Path) -> Any:
    """The ``ov.Model`` of ``xml`` and its ``.bin``, or a one-line :class:`DeenError` naming
    the file and what is wrong (missing, unparseable, weights that do not fit the graph)."""
    weights = weights_path_for(xml)
    if xml.suffix.lower() != ".xml":
        raise DeenError(f"{xml}: an OpenVINO model is a .xml file (with its .bin beside it)")
    if not xml.is_file():
        raise DeenError(f"{xml}: no such OpenVINO model file")
    if not weights.is_file():
        raise DeenError(f"{weights}: missing (the weights of {xml.name} must lie beside it)")
    try:
        model = core.read_model(str(xml), str(weights))
    except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
        raise DeenError(f"{xml}: not a readable OpenVINO model: {first_line(exc)}") from exc
    return model


def check_weights(xml: Path, manifest: dict[str, Any]) -> None:
    """The ``.bin`` must be the one exported with this ``.xml``: OpenVINO itself notices only
    a file too short for the graph, and another model's weights of the right size would run
    and give wrong embeddings."""
    expected = manifest.get("weights_sha256")
    weights = weights_path_for(xml)
    if expected is not None and sha256_file(weights) != expected:
        raise DeenError(f"{weights}: does not match {xml.name} (its SHA-256 differs from the "
                        "one recorded at export); copy the .xml and .bin of one export together")


def manifest_of(model: Any, xml: Path) -> dict[str, Any]:
    """The deen manifest of an IR: from its runtime info, else from ``FILE.xml.json``."""
    if model.has_rt_info(RT_INFO_KEY):
        return parse_manifest(str(model.get_rt_info(RT_INFO_KEY).astype(str)), str(xml))
    sidecar = manifest_path_for(xml)
    if sidecar.is_file():
        return parse_manifest(sidecar.read_text(), str(sidecar))
    raise DeenError(f"{xml}: not a deen export (no {RT_INFO_KEY!r} runtime info and no "
                    f"{sidecar.name})")


class OpenVinoEmbedder(Embedder):
    """``device`` is an OpenVINO device name that this machine has (``CPU``, ``GPU``,
    ``NPU``, ``AUTO``, …; default CPU) or ``cpu``; ``cuda`` is refused, since OpenVINO does
    not run on CUDA GPUs (:func:`deen.backends.devices.openvino_device`).
    ``inference_precision`` overrides the manifest's (``fp32`` or ``bf16``)."""

    def __init__(self, path: str | os.PathLike[str], *, device: str | None = None,
                 inference_precision: str | None = None, threads: int | None = None) -> None:
        import openvino as ov

        self.path = Path(path)
        self.core = ov.Core()
        self.device = openvino_device(device, self.core)  # before the model is read
        model = read_ir(self.core, self.path)
        self.manifest = manifest_of(model, self.path)
        check_weights(self.path, self.manifest)
        names = {port.get_any_name() for port in model.inputs}
        if names != {INPUT_IMAGES, INPUT_MODALITY}:
            raise DeenError(f"{self.path}: inputs are {sorted(names)}, expected "
                            f"{INPUT_IMAGES!r} and {INPUT_MODALITY!r}")
        self.adopt(self.manifest)
        precision = inference_precision or self.manifest.get("openvino", {}).get(
            "inference_precision", "fp32")
        if precision not in INFERENCE_PRECISIONS:
            raise DeenError(f"{self.path}: inference precision {precision!r} is not one of "
                            f"{', '.join(INFERENCE_PRECISIONS)}")
        properties: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY",
                                      "INFERENCE_PRECISION_HINT":
                                          INFERENCE_PRECISIONS[precision]}
        if threads is not None:
            properties["INFERENCE_NUM_THREADS"] = threads
        try:
            self.compiled = self.core.compile_model(model, self.device, properties)
        except Exception as exc:
            raise DeenError(f"{self.path}: OpenVINO could not compile it for "
                            f"{self.device}: {first_line(exc)}") from exc
        self.inference_precision = precision
        self.backend = f"openvino-{self.manifest.get('precision', 'fp32')}"
        self._request = self.compiled.create_infer_request()

    @property
    def execution_precision(self) -> str:
        """What the device actually computes float layers in (``f32`` or ``bf16``): bf16
        falls back to f32 on CPUs without bf16 instructions."""
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        return hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)

    def run(self, images: np.ndarray, modality: np.ndarray) -> np.ndarray:
        images, modality = validated_batch(images, modality, self.input_size)
        result = self._request.infer({INPUT_IMAGES: images, INPUT_MODALITY: modality})
        return np.array(result[self.compiled.output(OUTPUT_EMBEDDING)], dtype=np.float32)
