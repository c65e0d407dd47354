"""The fused DEE operator in ONNX: node ``deen.ops::DeeConv`` (version 1).

Inputs ``x`` (N×C×H×W) and ``weight`` (25×C×O, an initializer), output N×O×H×W, no
attributes; semantics and tap order as in ``cpp_ext/dee_conv.h``. ONNX Runtime runs it
with the custom-op library :func:`deen.ops.native.build` makes; a TensorRT plugin implements
the same contract.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import onnxscript
import torch
from onnx.defs import OpSchema

from deen.ops.dee_conv import ONNX_DOMAIN, ONNX_OP

ONNX_OPSET_VERSION = 1
SCHEMA = OpSchema(
    ONNX_OP, ONNX_DOMAIN, ONNX_OPSET_VERSION,
    doc="Fused DEE dilated convolution: y = ReLU(sum over 25 taps of weight[t]^T x shifted by "
        "tap t); see cpp_ext/dee_conv.h.",
    inputs=[OpSchema.FormalParameter("x", "T"), OpSchema.FormalParameter("weight", "T")],
    outputs=[OpSchema.FormalParameter("y", "T")],
    type_constraints=[("T", ["tensor(float)"], "float32 only")],
)
_OPSET = onnxscript.values.Opset(domain=ONNX_DOMAIN, version=ONNX_OPSET_VERSION)


def _dee_conv_to_onnx(x: onnxscript.ir.Value, weight: onnxscript.ir.Value
                      ) -> onnxscript.ir.Value:
    return onnxscript.values.Op(_OPSET, ONNX_OP, SCHEMA)(x, weight)


def translation_table() -> dict[object, object]:
    """``custom_translation_table`` for ``torch.onnx.export``: ``deen::dee_conv`` → DeeConv."""
    import deen.ops.dee_conv  # noqa: F401  (registers torch.ops.deen.dee_conv)

    return {torch.ops.deen.dee_conv.default: _dee_conv_to_onnx}


def uses_custom_ops(path: Path) -> bool:
    """Whether the ONNX file at ``path`` imports the ``deen.ops`` domain."""
    model = onnx.load(str(path), load_external_data=False)
    return any(o.domain == ONNX_DOMAIN for o in model.opset_import)
