"""The fused DEE dilated convolution: reference, weight folding and the ``deen::dee_conv`` op.

Each DEE branch sums three 3×3 convolutions of dilation 1, 2 and 3 over the same input,
divides by 3 and applies ReLU; both branches read the same input. Together they are one
operator: a convolution with 25 taps (the three 3×3 patterns share only the centre)
producing both branches' channels, with the 1/3 folded into the weight and the ReLU fused.
``cpp_ext/dee_conv.h`` defines it once for every implementation: inputs ``x`` (N×C×H×W) and
``weight`` (25×C×O, ``weight[t][c][o]``), output N×O×H×W, taps in :data:`TAPS` order.

Implementations: :func:`dee_conv_reference` (PyTorch, the ground truth and the backward),
the CPU and CUDA kernels behind ``torch.ops.deen.dee_conv`` (:mod:`deen.ops.native`), and
the ONNX Runtime custom op ``deen.ops::DeeConv`` built into the same library.
"""

from __future__ import annotations

import ctypes

import torch
import torch.nn.functional as F
from torch import Tensor

from deen.ops import native

DILATIONS = (1, 2, 3)
PAD = max(DILATIONS)
#: (dy, dx) of each tap: the shared centre, then each dilation's eight off-centre taps in
#: row-major order (the order of ``deen::dee_tap_offset`` in cpp_ext/dee_conv.h).
TAPS: tuple[tuple[int, int], ...] = ((0, 0), *(
    (dy * d, dx * d) for d in DILATIONS for dy in (-1, 0, 1) for dx in (-1, 0, 1)
    if (dy, dx) != (0, 0)))
ONNX_DOMAIN, ONNX_OP = "deen.ops", "DeeConv"
#: The ``dtype`` argument of ``deen_dee_conv_cuda`` (cpp_ext/dee_conv_cuda.cu).
CUDA_DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}


def dee_conv_reference(x: Tensor, weight: Tensor) -> Tensor:
    """ReLU(Σ_t weight[t]ᵀ · x shifted by tap t), in plain PyTorch: one einsum per tap."""
    _, _, h, w = x.shape
    padded = F.pad(x, (PAD, PAD, PAD, PAD))
    out = x.new_zeros(x.shape[0], weight.shape[2], h, w)
    for t, (dy, dx) in enumerate(TAPS):
        window = padded[:, :, PAD + dy:PAD + dy + h, PAD + dx:PAD + dx + w]
        out = out + torch.einsum("nchw,co->nohw", window, weight[t])
    return torch.relu(out)


def fold_branch_kernels(branches: list[list[Tensor]]) -> Tensor:
    """The operator's weight (25×C×O) from each branch's three dilated kernels
    (``branches[b][k]``: O_b×C×3×3 of dilation ``DILATIONS[k]``), the /3 folded in. Built from
    differentiable indexing, so gradients reach the kernels when training on the fused path."""
    per_branch = []
    for kernels in branches:
        taps = [sum(k[:, :, 1, 1] for k in kernels)]  # the shared centre
        for k in kernels:
            taps += [k[:, :, 1 + dy, 1 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                     if (dy, dx) != (0, 0)]
        per_branch.append(torch.stack(taps))  # 25 × O_b × C
    return (torch.cat(per_branch, dim=1) / 3).transpose(1, 2).contiguous()


def unfold_branch_kernels(weight: Tensor, branch_outputs: list[int]) -> list[list[Tensor]]:
    """Inverse of :func:`fold_branch_kernels` up to the shared centre: the centre tap goes to
    the dilation-1 kernel and the others get zero there, an equivalent DEE (same outputs)."""
    weight = weight.transpose(1, 2) * 3  # 25 × O × C
    branches, start = [], 0
    for outputs in branch_outputs:
        part = weight[:, start:start + outputs]
        start += outputs
        kernels = []
        for i in range(len(DILATIONS)):
            k = part.new_zeros(outputs, part.shape[2], 3, 3)
            cells = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
            for j, (dy, dx) in enumerate(cells):
                k[:, :, 1 + dy, 1 + dx] = part[1 + 8 * i + j]
            if i == 0:
                k[:, :, 1, 1] = part[0]
            kernels.append(k)
        branches.append(kernels)
    return branches


def _check(x: Tensor, weight: Tensor) -> None:
    torch._check(x.dim() == 4 and weight.dim() == 3, lambda: "dee_conv: x is N×C×H×W and "
                 "weight 25×C×O")
    torch._check(weight.shape[0] == len(TAPS) and weight.shape[1] == x.shape[1],
                 lambda: f"dee_conv: weight {tuple(weight.shape)} does not fit x "
                         f"{tuple(x.shape)} (expected 25×C×O)")


@torch.library.custom_op("deen::dee_conv", mutates_args=())
def dee_conv(x: Tensor, weight: Tensor) -> Tensor:
    """The fused operator on the native kernels (CPU; CUDA when built for a GPU)."""
    _check(x, weight)
    x, weight = x.contiguous(), weight.contiguous()
    n, c, h, w = x.shape
    out = x.new_empty(n, weight.shape[2], h, w)
    if x.device.type == "cuda":
        if x.dtype != weight.dtype:
            raise TypeError("dee_conv: x and weight must have the same dtype on CUDA")
        code = native.library(cuda=True).deen_dee_conv_cuda(
            x.data_ptr(), weight.data_ptr(), out.data_ptr(), n, c, h, w, weight.shape[2],
            CUDA_DTYPE_CODES[x.dtype], torch.cuda.current_stream(x.device).cuda_stream)
    elif x.dtype == torch.float32 and weight.dtype == torch.float32:
        code = native.library().deen_dee_conv_f32(
            ctypes.c_void_p(x.data_ptr()), ctypes.c_void_p(weight.data_ptr()),
            ctypes.c_void_p(out.data_ptr()), n, c, h, w, weight.shape[2],
            torch.get_num_threads())
    else:
        raise TypeError(f"dee_conv on CPU takes float32, got {x.dtype} and {weight.dtype}")
    if code != 0:
        raise RuntimeError(f"dee_conv: the native kernel failed (code {code})")
    return out



@dee_conv.register_fake
def _(x: Tensor, weight: Tensor) -> Tensor:
    _check(x, weight)
    return x.new_empty(x.shape[0], weight.shape[2], x.shape[2], x.shape[3])


def _setup_context(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
    """Gradients from the reference: recompute it with autograd and take its vjp."""
    x, weight = ctx.saved_tensors
    with torch.enable_grad():
        x_, w_ = x.detach().requires_grad_(), weight.detach().requires_grad_()
        dx, dw = torch.autograd.grad(dee_conv_reference(x_, w_), (x_, w_), grad)
    return dx, dw


dee_conv.register_autograd(_backward, setup_context=_setup_context)
