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

import numpy as np
import onnx

from deen.export.calibration import calibration_batches
from deen.modality import Modality

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


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over preprocessed mixed batches."""

    def __init__(self, crops: Sequence[tuple[np.ndarray, Modality]],
                 input_size: tuple[int, int]) -> None:
        self.batches = calibration_batches(crops, input_size, CALIBRATION_BATCH)
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
            # without VNNI) are less accurate (benchmarks/README.md, "ONNX int8 recipe").
            reduce_range=False,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        quantized = onnx.load(str(rounded_everywhere))
        float_consumers_read_float(quantized)
        onnx.save(quantized, str(out))
    finally:
        prepared.unlink(missing_ok=True)
        rounded_everywhere.unlink(missing_ok=True)
    return keep
