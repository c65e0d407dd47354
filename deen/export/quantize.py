"""int8 ONNX: static quantisation with ONNX Runtime's tools, calibrated on both modalities.

The fp32 export is quantised to QDQ form (int8 weights per output channel, uint8
activations) with calibration batches that alternate visible and infrared crops, so neither
modality's activation ranges dominate. Only convolutions are quantised; the layers where
int8 costs the most accuracy for the least speed stay in float (see
:data:`FLOAT_PATTERNS`): the stems' first convolution, MFA, DEE, the BN-neck and the block
outputs of layer4. The result is verified against PyTorch fp32 with the ``onnx-int8``
tolerance of :mod:`deen.export.compare`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import onnx

from deen.errors import DeenError
from deen.export.manifest import INPUT_IMAGES, INPUT_MODALITY
from deen.modality import Modality
from deen.preprocess import preprocess
from deen.runtime.sources import IMAGE_SUFFIXES
from deen.synthetic import make_people, render_person

#: Modules whose convolutions stay in float, by module path (the exporter records each
#: node's module path in its ``pkg.torch.onnx.name_scopes`` metadata). Measured on a model
#: trained by ``deen train`` (64×24, synthetic data), quantising one stage at a time: layers
#: 1–3 cost little (min cosine ≥ 0.997 each), all of layer4 drops it to 0.84; keeping only
#: layer4's block outputs (conv3, BN folded in) and its downsample in float restores 0.988.
FLOAT_PATTERNS = ("model.stems", "model.mfa", "model.dee", "model.neck",
                  "model.layer4.0.downsample", "model.layer4.0.bn3", "model.layer4.1.bn3",
                  "model.layer4.2.bn3")
_SCOPES = "pkg.torch.onnx.name_scopes"
CALIBRATION_BATCH = 8


def calibration_crops(source: Path | None, count: int = 64, seed: int = 0
                      ) -> list[tuple[np.ndarray, Modality]]:
    """Balanced visible/infrared crops: ``source/visible/*`` and ``source/infrared/*``
    (a folder of person crops per modality), or generated people when ``source`` is None."""
    if source is None:
        rng = np.random.default_rng(seed)
        people = make_people(count // 2, seed)
        return [(render_person(p, m, rng), m) for p in people
                for m in (Modality.VISIBLE, Modality.INFRARED)]
    crops: dict[Modality, list[np.ndarray]] = {}
    for modality in (Modality.VISIBLE, Modality.INFRARED):
        folder = Path(source) / modality.name.lower()
        files = sorted(p for p in folder.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES) \
            if folder.is_dir() else []
        if not files:
            raise DeenError(f"--calib {source}: expected person crops in {folder}/ "
                            "(visible/ and infrared/ subfolders)")
        images = []
        for path in files[: count // 2]:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise DeenError(f"{path}: not a readable image")
            images.append(image)
        crops[modality] = images
    n = min(len(v) for v in crops.values())  # balanced: as many of each
    return [(crops[m][i], m) for i in range(n) for m in (Modality.VISIBLE, Modality.INFRARED)]


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over preprocessed mixed batches."""

    def __init__(self, crops: Sequence[tuple[np.ndarray, Modality]],
                 input_size: tuple[int, int]) -> None:
        self.batches = []
        for start in range(0, len(crops), CALIBRATION_BATCH):
            chunk = crops[start:start + CALIBRATION_BATCH]
            self.batches.append({
                INPUT_IMAGES: preprocess([c for c, _ in chunk], size=input_size),
                INPUT_MODALITY: np.array([int(m) for _, m in chunk], dtype=np.int64)})
        self._iter: Iterator[dict[str, np.ndarray]] = iter(self.batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = iter(self.batches)


def module_path(node: onnx.NodeProto) -> str:
    """The PyTorch module a node came from (``model.layer4.2.bn3``), or ``""``."""
    for prop in node.metadata_props:
        if prop.key == _SCOPES:
            scopes = [s.strip(" '\"") for s in prop.value.strip("[]").split(",")]
            modules = [s for s in scopes if s.startswith("model")]  # the last entry is an op
            return max(modules, key=len, default="")
    return ""


def float_nodes(model: onnx.ModelProto, patterns: Sequence[str] = FLOAT_PATTERNS) -> list[str]:
    """Names of the nodes to keep in float: those from a module matching a pattern."""
    return [n.name for n in model.graph.node
            if any(module_path(n).startswith(p) for p in patterns)]


def quantize_int8(fp32_path: Path, out: Path, crops: Sequence[tuple[np.ndarray, Modality]],
                  input_size: tuple[int, int],
                  patterns: Sequence[str] = FLOAT_PATTERNS) -> list[str]:
    """Write the int8 model for ``fp32_path`` to ``out``; returns the nodes kept in float."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = out.with_name(f".{out.stem}.prep.onnx")
    try:
        # No graph optimisation here: it would rename the nodes float_nodes() picks.
        quant_pre_process(str(fp32_path), str(prepared), skip_optimization=True,
                          skip_symbolic_shape=True)
        keep = float_nodes(onnx.load(str(prepared)), patterns)
        quantize_static(
            str(prepared), str(out), _Reader(crops, input_size),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            op_types_to_quantize=["Conv"], nodes_to_exclude=keep,
            calibrate_method=CalibrationMethod.MinMax,
            # 7-bit weights: without VNNI, x86 int8 kernels can saturate intermediate sums.
            reduce_range=True,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
    finally:
        prepared.unlink(missing_ok=True)
    return keep
