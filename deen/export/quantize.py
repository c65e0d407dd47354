"""int8 ONNX: static quantisation with ONNX Runtime's tools, calibrated on both modalities.

The fp32 export is quantised to QDQ form (int8 weights per output channel, uint8
activations) with calibration batches that alternate visible and infrared crops, so neither
modality's activation ranges dominate. Only convolutions are quantised, and only their own
inputs are rounded to int8 (:func:`float_consumers_read_float`): ONNX Runtime's quantiser
shares one Quantize/Dequantize pair among all readers of a tensor, so without that step the
float residual additions, MFA and the convolutions kept in float would also read rounded
values. The layers where int8 costs the most accuracy for the least speed stay in float (see
:data:`FLOAT_PATTERNS`). The result is verified against PyTorch fp32 with the ``onnx-int8``
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
#: node's module path in its ``pkg.torch.onnx.name_scopes`` metadata; BatchNorm folded into a
#: convolution gives it the BatchNorm's path, e.g. ``model.layer4.0.bn1`` for conv1). The
#: stems' first convolution, MFA, DEE and the BN-neck are small and stay float. DEE's output
#: feeds layer4.0's downsample, a high-gain residual path: rounding it for every reader took
#: a trained model's min cosine from 1.0 to 0.79. The downsample stays float and reads the
#: float tensor; layer4.0's conv1 stays float too (int8 there: min cosine 0.9968 instead of
#: 0.9978, the same rank-1 agreement). layer4's block outputs (conv3) stay float because
#: they feed the pooled embedding directly. Measured on models trained by ``deen train``
#: (64×24, synthetic data); see benchmarks/README.md.
FLOAT_PATTERNS = ("model.stems", "model.mfa", "model.dee", "model.neck",
                  "model.layer4.0.downsample", "model.layer4.0.bn1", "model.layer4.0.bn3",
                  "model.layer4.1.bn3", "model.layer4.2.bn3")
_SCOPES = "pkg.torch.onnx.name_scopes"
CALIBRATION_BATCH = 8


VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")


def _video_crops(path: Path, count: int) -> list[np.ndarray]:
    """Up to ``count`` person crops from frames spread over a video, found by the HOG
    detector ``deen run`` uses by default."""
    from deen.runtime.detect import HogDetector

    capture = cv2.VideoCapture(str(path))
    frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    if not capture.isOpened() or frames <= 0:
        capture.release()
        raise DeenError(f"{path}: not a readable video")
    detector, crops = HogDetector(), []
    for index in np.linspace(0, frames - 1, num=min(frames, 4 * count), dtype=int):
        capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
        ok, frame = capture.read()
        if not ok:
            continue
        for x1, y1, x2, y2 in detector.detect(frame, path.name, int(index)).boxes.astype(int):
            crop = frame[max(y1, 0):y2, max(x1, 0):x2]
            if crop.size:
                crops.append(crop)
        if len(crops) >= count:
            break
    capture.release()
    return crops[:count]


def _modality_crops(source: Path, modality: Modality, count: int) -> list[np.ndarray]:
    """Crops of one modality: image files and videos in ``source/<modality>/``, or one video
    ``source/<modality>.mp4`` (the layout ``deen demo`` and ``deen run`` use)."""
    name = modality.name.lower()
    folder = source / name
    files = sorted(p for p in folder.iterdir()
                   if p.suffix.lower() in (*IMAGE_SUFFIXES, *VIDEO_SUFFIXES)) \
        if folder.is_dir() else sorted(p for p in source.glob(f"{name}.*")
                                      if p.suffix.lower() in VIDEO_SUFFIXES)
    if not files:
        raise DeenError(f"--calib {source}: expected {name} person crops or videos in "
                        f"{folder}/, or a video {source}/{name}.mp4")
    crops: list[np.ndarray] = []
    for path in files:
        if len(crops) >= count:
            break
        if path.suffix.lower() in VIDEO_SUFFIXES:
            crops += _video_crops(path, count - len(crops))
            continue
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise DeenError(f"{path}: not a readable image")
        crops.append(image)
    if not crops:
        raise DeenError(f"--calib {source}: the detector found no people in the {name} video")
    return crops[:count]


def calibration_crops(source: Path | None, count: int = 64, seed: int = 0
                      ) -> list[tuple[np.ndarray, Modality]]:
    """Balanced visible/infrared crops, ``count`` in all, alternating modalities: from
    ``source`` (see :func:`_modality_crops`), or generated people when ``source`` is None."""
    if source is None:
        rng = np.random.default_rng(seed)
        people = make_people(count // 2, seed)
        return [(render_person(p, m, rng), m) for p in people
                for m in (Modality.VISIBLE, Modality.INFRARED)]
    source = Path(source)
    if not source.is_dir():
        raise DeenError(f"--calib {source}: not a folder (expected visible/ and infrared/ "
                        "crops or videos, or visible.mp4 and infrared.mp4)")
    crops = {m: _modality_crops(source, m, count // 2)
             for m in (Modality.VISIBLE, Modality.INFRARED)}
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


def float_consumers_read_float(model: onnx.ModelProto) -> int:
    """Point every reader of a rounded activation that is not an int8 convolution back at the
    float tensor; returns how many inputs were re-pointed.

    ONNX Runtime's quantiser puts one QuantizeLinear/DequantizeLinear pair on a tensor that
    an int8 convolution reads, and every other reader of that tensor (a residual Add, MFA, a
    convolution kept in float) reads the rounded copy too. Those readers compute in float
    either way, so the rounding costs them accuracy and saves nothing. The int8 convolutions'
    own outputs keep their pairs: ONNX Runtime needs them to fuse a QLinearConv.
    """
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}

    def is_int8_conv(node: onnx.NodeProto) -> bool:
        weight = producer.get(node.input[1]) if len(node.input) > 1 else None
        return (node.op_type == "Conv" and weight is not None
                and weight.op_type == "DequantizeLinear")

    rounded = {}  # DequantizeLinear output → the float tensor its QuantizeLinear read
    for node in graph.node:
        quantize = producer.get(node.input[0]) if node.op_type == "DequantizeLinear" else None
        if quantize is None or quantize.op_type != "QuantizeLinear":
            continue
        source = producer.get(quantize.input[0])
        if source is None or not is_int8_conv(source):
            rounded[node.output[0]] = quantize.input[0]
    moved = 0
    for node in graph.node:
        if is_int8_conv(node):
            continue
        for i, name in enumerate(node.input):
            if name in rounded:
                node.input[i] = rounded[name]
                moved += 1
    return moved


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
    rounded_everywhere = out.with_name(f".{out.stem}.qdq.onnx")  # as quantize_static writes it
    try:
        # No graph optimisation here: it would rename the nodes float_nodes() picks.
        quant_pre_process(str(fp32_path), str(prepared), skip_optimization=True,
                          skip_symbolic_shape=True)
        keep = float_nodes(onnx.load(str(prepared)), patterns)
        quantize_static(
            str(prepared), str(rounded_everywhere), _Reader(crops, input_size),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            op_types_to_quantize=["Conv"], nodes_to_exclude=keep,
            calibrate_method=CalibrationMethod.MinMax,
            # Full 8-bit weights: 7-bit ones (reduce_range, against u8s8 saturation on CPUs
            # without VNNI) measured less accurate on this project's AVX2 machine (min cosine
            # 0.9960 against 0.9978 for 8-bit) with ONNX Runtime 1.32.
            reduce_range=False,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        quantized = onnx.load(str(rounded_everywhere))
        float_consumers_read_float(quantized)
        onnx.save(quantized, str(out))
    finally:
        prepared.unlink(missing_ok=True)
        rounded_everywhere.unlink(missing_ok=True)
    return keep
