"""TensorRT plugin for the fused DEE node (``deen.ops::DeeConv`` in ONNX).

A TensorRT Python plugin (``tensorrt.plugin``, TensorRT ≥ 10.6) whose implementation calls
the project's CUDA kernel (``cpp_ext/dee_conv_cuda.cu``) on TensorRT's stream: same inputs,
layout and semantics as ``cpp_ext/dee_conv.h`` and the ONNX Runtime custom op. The ONNX
parser finds it by op type ``DeeConv`` and the ``plugin_namespace`` attribute that
:func:`deen.export.tensorrt_build.build_engine` adds to its private copy of the graph.

Written against the TensorRT 10 ``tensorrt.plugin`` documentation and not yet run on a
TensorRT installation; its tests skip, with the reason, where TensorRT is absent.
"""

from __future__ import annotations

from pathlib import Path

PLUGIN_NAMESPACE = "deen"
PLUGIN_ID = f"{PLUGIN_NAMESPACE}::DeeConv"
_registered = False


def kernel_library_path() -> Path:
    from deen.ops import native

    return native.library_path(cuda=True)


def register() -> None:
    """Register the plugin with TensorRT (once per process); builds the CUDA kernels first."""
    global _registered
    if _registered:
        return
    import tensorrt.plugin as trtp
    import torch

    from deen.ops import native
    from deen.ops.dee_conv import CUDA_DTYPE_CODES

    kernel = native.library(cuda=True).deen_dee_conv_cuda

    @trtp.register(PLUGIN_ID)
    def _describe(x: trtp.TensorDesc, weight: trtp.TensorDesc) -> trtp.TensorDesc:
        # N × O × H × W: x's shape with weight's O (25 × C × O) as channels.
        shape = (x.shape_expr[0], weight.shape_expr[2], x.shape_expr[2], x.shape_expr[3])
        return trtp.from_shape_expr(shape, dtype=x.dtype)

    @trtp.autotune(PLUGIN_ID)
    def _formats(x: trtp.TensorDesc, weight: trtp.TensorDesc, outputs: tuple[trtp.TensorDesc]
                 ) -> list[trtp.AutoTuneCombination]:
        return [trtp.AutoTuneCombination("FP32|FP16,FP32|FP16,FP32|FP16", "LINEAR")]

    @trtp.impl(PLUGIN_ID)
    def _enqueue(x: trtp.Tensor, weight: trtp.Tensor, outputs: tuple[trtp.Tensor],
                 stream: int) -> None:
        xt = torch.as_tensor(x, device="cuda")
        wt = torch.as_tensor(weight, device="cuda")
        yt = torch.as_tensor(outputs[0], device="cuda")
        n, c, h, w = xt.shape
        code = kernel(xt.data_ptr(), wt.data_ptr(), yt.data_ptr(), n, c, h, w, wt.shape[2],
                      CUDA_DTYPE_CODES[xt.dtype], stream)
        if code != 0:
            raise RuntimeError(f"DeeConv CUDA kernel failed (cudaError {code})")

    _registered = True
