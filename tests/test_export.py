"""ONNX export: the real command on a reference-format checkpoint, then ONNX Runtime vs PyTorch
(acceptance: max abs diff ≤ 1e-4, cosine ≥ 0.99999 at batch 1 and 5 with mixed modalities),
the manifest, the embedder selection, and no file left behind when verification fails."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import numpy as np
import onnx
import pytest
import torch
from conftest import person_images
from reference_spec import reference_test_features

from deen import formats
from deen.backends import open_embedder
from deen.backends.artifact import METADATA_KEY, manifest_path_for
from deen.backends.onnxrt_backend import OnnxRuntimeEmbedder
from deen.backends.torch_backend import TorchEmbedder
from deen.embedding import EmbeddingConfig
from deen.errors import DeenError
from deen.export.compare import Tolerance, row_cosines
from deen.export.onnx_export import export_onnx
from deen.fileio import sha256_file
from deen.modality import Modality
from deen.models.checkpoint import load_checkpoint, random_model
from deen.models.embedding_network import EmbeddingNetwork
from deen.preprocess import preprocess

VIS, IR = Modality.VISIBLE, Modality.INFRARED


@pytest.fixture(scope="module")
def sysu_export(reference_checkpoint, tmp_path_factory):
    """`deen export` run as a user runs it, on a checkpoint in the reference format."""
    checkpoint = reference_checkpoint("sysu")
    out = tmp_path_factory.mktemp("export") / "deen_sysu.onnx"
    result = subprocess.run(
        [sys.executable, "-m", "deen", "export", "--engine", "onnx",
         "--checkpoint", str(checkpoint), "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "verified" in result.stdout
    return checkpoint, out


@pytest.mark.parametrize("modalities", [[VIS], [IR], [VIS, IR, IR, VIS, IR]],
                         ids=["batch1-visible", "batch1-infrared", "batch5-mixed"])
def test_onnxruntime_matches_pytorch(sysu_export, modalities):
    checkpoint, onnx_path = sysu_export
    images = person_images(modalities, seed=42)
    expected = TorchEmbedder.from_checkpoint(checkpoint, device="cpu").embed(images, modalities)
    actual = OnnxRuntimeEmbedder(onnx_path, device="cpu").embed(images, modalities)
    assert actual.shape == (len(modalities), 6 * 2048)
    assert np.abs(actual - expected).max() <= 1e-4
    assert row_cosines(actual, expected).min() >= 0.99999


def test_onnx_matches_independent_reference(sysu_export, reference_state):
    _, onnx_path = sysu_export
    images = person_images([IR, IR], seed=7)
    actual = OnnxRuntimeEmbedder(onnx_path, device="cpu").embed(images, IR)
    p, q = reference_test_features(reference_state("sysu"), torch.from_numpy(preprocess(images)),
                                   "infrared", "sysu")
    expected = torch.cat([p[0], q[0], p[1], q[1], p[2], q[2]], dim=1).numpy()
    assert np.abs(actual - expected).max() <= 1e-4


def test_manifest_describes_the_export(sysu_export):
    checkpoint, onnx_path = sysu_export
    manifest = json.loads(manifest_path_for(onnx_path).read_text())
    assert manifest["variant"] == "sysu"
    assert manifest["sha256"] == sha256_file(onnx_path)
    assert manifest["source"] == {"kind": "reference", "checkpoint": str(checkpoint),
                                  "sha256": sha256_file(checkpoint), "seed": None}
    assert manifest["embedding"] == {"flip": True, "a": None}
    assert manifest["inputs"]["images"]["shape"] == ["batch", 3, 384, 144]
    assert manifest["inputs"]["images"]["preprocessing"]["channel_order"] == "RGB"
    assert manifest["inputs"]["modality"]["values"] == {"visible": 0, "infrared": 1}
    assert manifest["output"]["embedding"]["layout"]["parts"] == ["P0", "Q0", "P1", "Q1",
                                                                  "P2", "Q2"]
    assert manifest["output"]["embedding"]["shape"] == ["batch", 12288]
    verification = manifest["verification"]
    assert verification["passed"] and verification["max_abs_diff"] <= 1e-4
    assert {c["case"] for c in verification["cases"]} == {"visible", "infrared", "mixed"}
    assert {"torch", "onnx", "onnxruntime", "deen"} <= set(manifest["versions"])
    embedded = onnx.load(str(onnx_path), load_external_data=False).metadata_props
    assert json.loads({p.key: p.value for p in embedded}[METADATA_KEY])["variant"] == "sysu"


def test_graph_is_standard_onnx_with_dynamic_batch(sysu_export):
    _, onnx_path = sysu_export
    graph = onnx.load(str(onnx_path)).graph
    assert all(node.domain in ("", "ai.onnx") for node in graph.node)
    dilations = Counter(tuple(a.ints) for n in graph.node if n.op_type == "Conv"
                        for a in n.attribute if a.name == "dilations")
    assert dilations[(2, 2)] == 2 and dilations[(3, 3)] == 2  # DEE's dilated convs, 2 branches
    inputs = {i.name: i.type.tensor_type for i in graph.input}
    assert inputs["images"].elem_type == onnx.TensorProto.FLOAT
    assert inputs["modality"].elem_type == onnx.TensorProto.INT64
    assert inputs["images"].shape.dim[0].dim_param  # symbolic batch


def test_open_embedder_picks_backend_by_suffix(sysu_export, tmp_path):
    checkpoint, onnx_path = sysu_export
    assert isinstance(open_embedder(onnx_path), OnnxRuntimeEmbedder)
    assert isinstance(open_embedder(checkpoint, device="cpu"), TorchEmbedder)
    with pytest.raises(DeenError, match="unknown model file type"):
        open_embedder(tmp_path / "model.bin")
    with pytest.raises(DeenError, match="re-export"):
        open_embedder(onnx_path, config=EmbeddingConfig(flip=False))


def test_run_contract_is_checked_for_every_backend(sysu_export):
    checkpoint, onnx_path = sysu_export
    images = preprocess(person_images([VIS, IR], seed=2))
    for embedder in (OnnxRuntimeEmbedder(onnx_path), TorchEmbedder.from_checkpoint(checkpoint)):
        as_int32 = embedder.run(images, np.array([0, 1], dtype=np.int32))
        assert np.array_equal(as_int32, embedder.run(images, np.array([0, 1])))
        with pytest.raises(DeenError, match="modality codes must be"):
            embedder.run(images, np.array([0, 2]))
        with pytest.raises(DeenError, match="one integer code per image"):
            embedder.run(images, np.array([0]))
        with pytest.raises(DeenError, match="float32"):
            embedder.run(images.astype(np.float64), np.array([0, 1]))


def test_regdb_export_with_settings(reference_checkpoint, tmp_path):
    loaded = load_checkpoint(reference_checkpoint("regdb"))
    config = EmbeddingConfig(flip=False, a=0.1)
    # The settings are what is tested, so a small input keeps it quick.
    result = export_onnx(loaded.model, tmp_path / "regdb.onnx", config=config,
                         source=loaded.source, input_size=(64, 24))
    embedder = open_embedder(result.model_path)
    assert embedder.config == config and embedder.variant == "regdb" and embedder.dim == 6 * 1024
    assert embedder.input_size == (64, 24)
    images = person_images([IR, VIS, VIS], seed=1)
    expected = TorchEmbedder(loaded.model, config, device="cpu",
                             input_size=(64, 24)).embed(images, [IR, VIS, VIS])
    assert np.abs(embedder.embed(images, [IR, VIS, VIS]) - expected).max() <= 1e-4


def test_failed_verification_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setitem(formats.get("onnx").tolerances, "fp32", Tolerance(0.0, 1.5))
    model, source = random_model("regdb", seed=0)
    out = tmp_path / "out" / "model.onnx"
    with pytest.raises(DeenError, match="failed verification"):
        export_onnx(model, out, config=EmbeddingConfig(), source=source, input_size=(64, 24))
    assert list(out.parent.iterdir()) == []


def test_a_network_is_traced_once_for_its_weights_and_settings(tmp_path, monkeypatch):
    """Tracing costs 10-20 s; with DEEN_TRACE_CACHE, an export of weights and settings traced
    before reuses that graph, still verified, and a kept graph that does not load is traced
    again; without it every export traces."""
    from deen.export import onnx_export, trace_cache

    monkeypatch.setenv(trace_cache.ENV, str(tmp_path / "traces"))
    traced: list = []
    real = onnx_export._trace

    def counting(*args):  # one real trace (10-20 s), handed out again when asked for more
        traced.append(traced[0] if traced else real(*args))
        return traced[-1]

    monkeypatch.setattr(onnx_export, "_trace", counting)
    model, source = random_model("regdb", seed=0)
    config = EmbeddingConfig(flip=False)

    def export(name: str) -> dict:
        return export_onnx(model, tmp_path / name, config=config, source=source,
                           input_size=(64, 24)).manifest

    assert export("a.onnx")["verification"]["passed"] and len(traced) == 1
    assert export("b.onnx")["verification"]["passed"] and len(traced) == 1  # from the folder
    kept = list((tmp_path / "traces").glob("*.onnx"))
    assert len(kept) == 1
    kept[0].write_bytes(b"not a graph")
    assert export("c.onnx")["verification"]["passed"] and len(traced) == 2
    monkeypatch.delenv(trace_cache.ENV)
    assert export("d.onnx")["verification"]["passed"] and len(traced) == 3
    assert export("e.onnx")["verification"]["passed"] and len(traced) == 4

    # The key: the same for equal weights and settings, another for any change of either.
    network = EmbeddingNetwork(model, config)
    settings = {"opset": 18, "input_size": (64, 24), "dee_op": "standard"}
    key = trace_cache.trace_key(network, settings)
    other, _ = random_model("regdb", seed=0)
    assert trace_cache.trace_key(EmbeddingNetwork(other, config), settings) == key
    for changed in ({**settings, "input_size": (128, 48)}, {**settings, "dee_op": "custom"}):
        assert trace_cache.trace_key(network, changed) != key
    with torch.no_grad():
        next(other.parameters()).add_(1e-3)
    assert trace_cache.trace_key(EmbeddingNetwork(other, config), settings) != key
