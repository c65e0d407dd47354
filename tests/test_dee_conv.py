"""The fused DEE operator: folding, every implementation against the reference, gradients,
the model's two paths, the ONNX custom node in ONNX Runtime and the CUDA source."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from deen.backends.onnxrt_backend import OnnxRuntimeEmbedder
from deen.embedding import EmbeddingConfig
from deen.export.onnx_export import export_onnx
from deen.models.checkpoint import random_model
from deen.models.dee import DEE
from deen.ops import native
from deen.ops.dee_conv import (
    DILATIONS,
    ONNX_DOMAIN,
    ONNX_OP,
    TAPS,
    dee_conv,
    dee_conv_reference,
    unfold_branch_kernels,
)

NATIVE = native.available()
needs_native = pytest.mark.skipif(NATIVE is not None, reason=f"native ops unavailable: {NATIVE}")
# Batch 1, 3 and 32; odd and degenerate spatial sizes; outputs not a multiple of 16.
SHAPES = [(1, 16, 7, 5, 8), (3, 24, 9, 4, 20), (32, 8, 3, 1, 6), (1, 64, 24, 9, 32)]


def _inputs(n: int, c: int, h: int, w: int, o: int, seed: int = 0
            ) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, h, w, generator=g), torch.randn(25, c, o, generator=g) / c**0.5


def test_taps_are_the_three_dilated_patterns_sharing_one_centre():
    patterns = {(dy * d, dx * d) for d in DILATIONS for dy in (-1, 0, 1) for dx in (-1, 0, 1)}
    assert len(TAPS) == 25 and set(TAPS) == patterns and TAPS[0] == (0, 0)


def test_folded_weight_computes_both_branches_and_unfolds_to_an_equivalent_dee():
    torch.manual_seed(0)
    dee = DEE(16, impl="reference").eval()
    x = torch.randn(2, 16, 6, 5)
    weight = dee.fold()
    assert weight.shape == (25, 16, 8)
    fused = dee_conv_reference(x, weight)
    for k, branch in enumerate((dee.branch1, dee.branch2)):
        expected = torch.relu(sum(conv(x) for conv in branch.dilated) / 3)
        torch.testing.assert_close(fused[:, 4 * k:4 * (k + 1)], expected, atol=1e-5, rtol=1e-5)
    rebuilt = DEE(16, impl="reference").eval()
    rebuilt.load_state_dict(dee.state_dict())
    for branch, kernels in zip((rebuilt.branch1, rebuilt.branch2),
                               unfold_branch_kernels(weight, [4, 4]), strict=True):
        for conv, kernel in zip(branch.dilated, kernels, strict=True):
            conv.weight.data.copy_(kernel)
    assert not torch.equal(rebuilt.branch1.dilated[1].weight, dee.branch1.dilated[1].weight)
    torch.testing.assert_close(rebuilt(x), dee(x), atol=1e-5, rtol=1e-5)


@needs_native
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_cpu_kernel_matches_the_reference(shape):
    x, weight = _inputs(*shape)
    error = (dee_conv(x, weight) - dee_conv_reference(x, weight)).abs().max().item()
    assert error <= 1e-4


@needs_native
def test_op_registration_fake_and_autograd_hold_up():
    """torch.library's own checks (schema, fake tensor, autograd registration), and
    gradients through the op equal the reference's."""
    x, weight = _inputs(2, 8, 5, 4, 6)
    torch.library.opcheck(dee_conv, (x, weight))
    xs, ws = x.clone().requires_grad_(), weight.clone().requires_grad_()
    xr, wr = x.clone().requires_grad_(), weight.clone().requires_grad_()
    grad = torch.randn(2, 6, 5, 4)
    (dee_conv(xs, ws) * grad).sum().backward()
    (dee_conv_reference(xr, wr) * grad).sum().backward()
    torch.testing.assert_close(xs.grad, xr.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ws.grad, wr.grad, atol=1e-5, rtol=1e-4)
    with pytest.raises(RuntimeError, match="25×C×O"):
        dee_conv(x, weight[:, :4])


@needs_native
@pytest.mark.parametrize("variant", ["regdb", "sysu"])
def test_model_embeddings_and_training_gradients_match_on_the_fused_path(variant):
    model, _ = random_model(variant, 0)
    images = torch.randn(3, 3, 64, 24, generator=torch.Generator().manual_seed(1))
    modality = torch.tensor([0, 1, 0])
    model.eval()
    with torch.no_grad():
        model.set_dee_impl("reference")
        reference = model(images, modality)
        model.set_dee_impl("fused")
        fused = model(images, modality)
    for a, b in zip(reference, fused, strict=True):
        assert (a - b).abs().max().item() <= 1e-4
    # Training on the fused path reaches the six dilated kernels with the same gradients.
    model.train()
    grads = {}
    for impl in ("reference", "fused"):
        model.set_dee_impl(impl)
        model.zero_grad()
        torch.manual_seed(2)  # the same dropout masks
        out = model(images, modality)
        (out.logits.square().mean() + out.pool.sum()).backward()
        grads[impl] = model.dee.branch2.dilated[2].weight.grad.clone()
    torch.testing.assert_close(grads["fused"], grads["reference"], atol=1e-4, rtol=1e-3)


def _single_node_model() -> onnx.ModelProto:
    node = helper.make_node(ONNX_OP, ["x", "weight"], ["y"], domain=ONNX_DOMAIN)
    graph = helper.make_graph(
        [node], "dee_conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("weight", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18),
                                                   helper.make_opsetid(ONNX_DOMAIN, 1)])


@needs_native
def test_onnx_runtime_custom_op_matches_the_reference():
    options = ort.SessionOptions()
    options.register_custom_ops_library(str(native.build()))
    session = ort.InferenceSession(_single_node_model().SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    for shape in SHAPES:
        x, weight = _inputs(*shape, seed=3)
        (y,) = session.run(None, {"x": x.numpy(), "weight": weight.numpy()})
        assert np.abs(y - dee_conv_reference(x, weight).numpy()).max() <= 1e-4, shape
    x, weight = _inputs(1, 8, 4, 4, 4)
    with pytest.raises(Exception, match="DeeConv"):  # a weight for other channels
        session.run(None, {"x": x.numpy(), "weight": weight[:, :4].numpy()})


@needs_native
def test_custom_node_export_runs_in_onnx_runtime_and_matches_pytorch(tmp_path):
    model, source = random_model("regdb", 0)
    result = export_onnx(model, tmp_path / "custom.onnx", config=EmbeddingConfig(flip=False),
                         source=source, input_size=(64, 24), dee_op="custom")
    graph = onnx.load(str(result.model_path)).graph
    assert [n.op_type for n in graph.node if n.domain == ONNX_DOMAIN] == [ONNX_OP]
    assert result.manifest["dee_op"] == "custom" and result.verification.passed
    assert model.dee.impl == "auto"  # exporting did not switch the caller's model
    embedder = OnnxRuntimeEmbedder(result.model_path, device="cpu")  # loads the library
    images = np.random.default_rng(0).standard_normal((3, 3, 64, 24)).astype(np.float32)
    modality = np.array([0, 1, 1])
    model.eval()
    with torch.no_grad():
        from deen.models.embedding_network import EmbeddingNetwork

        expected = EmbeddingNetwork(model, EmbeddingConfig(flip=False))(
            torch.from_numpy(images), torch.from_numpy(modality)).numpy()
    assert np.abs(embedder.run(images, modality) - expected).max() <= 1e-4


def test_build_ops_command_line():
    result = subprocess.run([sys.executable, "-m", "deen", "build-ops"], capture_output=True,
                            text=True, timeout=300)
    if NATIVE is not None:
        assert result.returncode == 1 and "error" in result.stderr
    else:
        assert result.returncode == 0 and "libdeen_ops.so" in result.stdout


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
def test_cuda_kernels_compile(tmp_path):
    """Compile-only where there is no GPU: the fp32 SIMT and fp16/bf16 tensor-core kernels."""
    command = native.cuda_build_command(tmp_path / "dee_conv_cuda.o", arch="sm_80")
    command = [a for a in command if a != "-shared"] + ["-c"]
    result = subprocess.run(command, cwd=native.SOURCE_DIR, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "dee_conv_cuda.o").stat().st_size > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_kernel_matches_the_reference(dtype):
    for shape in SHAPES:
        x, weight = (t.cuda() for t in _inputs(*shape, seed=4))
        expected = dee_conv_reference(x.double(), weight.double())
        got = dee_conv(x.to(dtype), weight.to(dtype)).double()
        if dtype == torch.float32:
            assert (got - expected).abs().max().item() <= 1e-4, shape
        else:
            relative = (got - expected).norm() / expected.norm()
            assert relative.item() <= 1e-2, shape
