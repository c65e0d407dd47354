"""TensorRT export and Triton repository: everything that does not need TensorRT runs here;
the TensorRT paths run wherever ``tensorrt`` and a CUDA GPU exist and skip elsewhere."""

from __future__ import annotations

import hashlib
import json
import py_compile
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from deen.backends.artifact import METADATA_KEY
from deen.backends.tensorrt_env import check_engine_manifest, require_tensorrt, split_batches
from deen.errors import DeenError
from deen.export.tensorrt_build import (
    TrtBuildOptions,
    _mark_plugin_nodes,
    check_onnx_precision,
    engine_manifest,
)
from deen.export.triton import ServingOptions, model_config
from deen.models.checkpoint import random_model, save_checkpoint
from deen.ops.dee_conv import ONNX_DOMAIN, ONNX_OP

SIZE = (64, 24)
try:
    require_tensorrt()
    TRT_MISSING = None
except DeenError as exc:
    TRT_MISSING = str(exc)
needs_trt = pytest.mark.skipif(TRT_MISSING is not None, reason=str(TRT_MISSING))


def parse_pbtxt(text: str) -> dict:
    """``config.pbtxt`` read with Triton's own ``ModelConfig`` schema (the protobuf module
    tritonclient ships, loaded by file: its package needs gRPC), as a dict whose integer
    fields stay integers; the test checks what a server would read, not our strings."""
    import importlib.util

    import tritonclient
    from google.protobuf import json_format, text_format

    path = Path(tritonclient.__file__).parent / "grpc" / "model_config_pb2.py"
    spec = importlib.util.spec_from_file_location("triton_model_config_pb2", path)
    schema = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(schema)
    config = json_format.MessageToDict(text_format.Parse(text, schema.ModelConfig()),
                                       preserving_proto_field_name=True)

    def ints(value):  # protobuf's JSON writes int64 as strings
        if isinstance(value, dict):
            return {k: ints(v) for k, v in value.items()}
        if isinstance(value, list):
            return [ints(v) for v in value]
        return int(value) if isinstance(value, str) and re.fullmatch(r"-?\d+", value) else value
    return ints(config)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model, _ = random_model("regdb", 0)
    path = tmp_path_factory.mktemp("ckpt") / "m.pt"
    save_checkpoint(model, path, {"input_size": list(SIZE)})
    return path


def _deen(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deen", *args], capture_output=True, text=True,
                          timeout=600)


@pytest.mark.skipif(TRT_MISSING is None, reason="TensorRT and a GPU are present")
def test_trt_export_without_tensorrt_is_one_clear_line_and_writes_nothing(checkpoint, tmp_path):
    out = tmp_path / "m.engine"
    result = _deen("export", "--engine", "trt", "--checkpoint", str(checkpoint), "--out",
                   str(out), "--precision", "fp16")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "TensorRT" in lines[0] and "pip install tensorrt" in lines[0]
    assert "Traceback" not in result.stderr and not list(tmp_path.iterdir())


def test_build_options_and_profile_shapes():
    options = TrtBuildOptions(precision="int8", min_batch=1, opt_batch=4, max_batch=16)
    shapes = options.profile_shapes((384, 144))
    assert shapes["images"] == ((1, 3, 384, 144), (4, 3, 384, 144), (16, 3, 384, 144))
    assert shapes["modality"] == ((1,), (4,), (16,))
    with pytest.raises(DeenError, match="min_batch"):
        TrtBuildOptions(min_batch=8, opt_batch=4, max_batch=16)
    with pytest.raises(DeenError, match="precision"):
        TrtBuildOptions(precision="int4")
    result = _deen("export", "--engine", "trt", "--checkpoint", "x.pt", "--out", "x.engine",
                   "--opt-batch", "64")
    assert result.returncode == 2 and "--max-batch" in result.stderr  # an argument error


def _onnx_manifest() -> dict:
    from deen.backends.artifact import build_manifest
    from deen.embedding import EmbeddingConfig

    model, source = random_model("regdb", 0)
    return build_manifest(engine="onnx", variant="regdb", num_classes=model.num_classes,
                          embedding_dim=1024, config=EmbeddingConfig(), source=source,
                          opset=18, input_size=(384, 144))


def test_engine_manifest_is_checked_against_the_running_tensorrt_and_gpu(tmp_path):
    path = tmp_path / "m.engine"
    built = engine_manifest(_onnx_manifest(), TrtBuildOptions(), "10.3.0", "NVIDIA L4",
                            (8, 9), [])
    assert built["engine"] == "tensorrt" and built["profile"]["max_batch"] == 32
    assert built["inputs"]["images"]["shape"] == ["batch", 3, 384, 144]
    check_engine_manifest(built, "10.3.0", "NVIDIA L4", (8, 9), path)
    with pytest.raises(DeenError, match=r"TensorRT 10\.3\.0, this is 10\.5\.1"):
        check_engine_manifest(built, "10.5.1", "NVIDIA L4", (8, 9), path)
    with pytest.raises(DeenError, match=r"sm_89.*sm_90"):
        check_engine_manifest(built, "10.3.0", "NVIDIA H100", (9, 0), path)
    portable = engine_manifest(_onnx_manifest(), TrtBuildOptions(
        version_compatible=True, hardware_compatible=True), "10.3.0", "NVIDIA L4", (8, 9), [])
    check_engine_manifest(portable, "10.5.1", "NVIDIA H100", (9, 0), path)
    with pytest.raises(DeenError, match="Ampere"):
        check_engine_manifest(portable, "10.5.1", "Tesla T4", (7, 5), path)
    with pytest.raises(DeenError, match=r"TensorRT 10\.x"):
        check_engine_manifest(portable, "11.0.0", "NVIDIA H100", (9, 0), path)
    with pytest.raises(DeenError, match="does not describe"):
        check_engine_manifest(_onnx_manifest(), "10.3.0", "NVIDIA L4", (8, 9), path)


def test_int8_engines_come_only_from_the_qdq_export(tmp_path):
    fp32, int8 = _onnx_manifest(), {**_onnx_manifest(), "precision": "int8"}
    check_onnx_precision(TrtBuildOptions(precision="int8"), int8, tmp_path)
    check_onnx_precision(TrtBuildOptions(precision="fp16"), fp32, tmp_path)
    with pytest.raises(DeenError, match="QDQ"):
        check_onnx_precision(TrtBuildOptions(precision="int8"), fp32, tmp_path)
    with pytest.raises(DeenError, match="precision int8"):
        check_onnx_precision(TrtBuildOptions(precision="fp16"), int8, tmp_path)


def test_batches_above_the_profile_are_split():
    assert split_batches(70, 32) == [(0, 32), (32, 64), (64, 70)]
    assert split_batches(0, 8) == [] and split_batches(3, 8) == [(0, 3)]


def test_plugin_nodes_are_marked_only_in_tensorrts_copy(tmp_path):
    node = helper.make_node(ONNX_OP, ["x", "w"], ["y"], domain=ONNX_DOMAIN)
    graph = helper.make_graph([node], "g", [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, None),
        helper.make_tensor_value_info("w", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    source = tmp_path / "custom.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid(ONNX_DOMAIN, 1)]),
              source)
    assert _mark_plugin_nodes(source, tmp_path / "copy.onnx")
    (marked,) = onnx.load(str(tmp_path / "copy.onnx")).graph.node
    assert {a.name: a.s for a in marked.attribute} == {"plugin_namespace": b"deen"}
    assert not onnx.load(str(source)).graph.node[0].attribute


def test_triton_repository_configs_parse_and_match_the_onnx_model(checkpoint, tmp_path):
    repo = tmp_path / "repo"
    result = _deen("export", "--engine", "triton", "--checkpoint", str(checkpoint), "--out",
                   str(repo), "--max-batch", "16", "--preferred-batches", "4,8,16,64")
    assert result.returncode == 0, result.stderr
    config = parse_pbtxt((repo / "deen_onnx" / "config.pbtxt").read_text())
    assert config["backend"] == "onnxruntime" and config["max_batch_size"] == 16
    assert config["dynamic_batching"]["preferred_batch_size"] == [4, 8, 16]
    model = onnx.load(str(repo / "deen_onnx" / "1" / "model.onnx"))
    types = {TensorProto.FLOAT: "TYPE_FP32", TensorProto.INT64: "TYPE_INT64"}

    def graph_io(values):
        return {v.name: ([d.dim_value for d in v.type.tensor_type.shape.dim[1:]],
                         types[v.type.tensor_type.elem_type]) for v in values}

    declared = {i["name"]: (i["dims"], i["data_type"]) for i in config["input"]}
    expected = graph_io(model.graph.input)
    assert declared["images"] == expected["images"] == ([3, *SIZE], "TYPE_FP32")
    # modality is one value per row: dims [1] reshaped to the graph's per-row scalar.
    assert expected["modality"] == ([], "TYPE_INT64") and declared["modality"] == ([1],
                                                                                  "TYPE_INT64")
    assert {o["name"]: (o["dims"], o["data_type"]) for o in config["output"]} == \
        graph_io(model.graph.output)
    assert config["instance_group"][0]["kind"] == "KIND_CPU"
    carried = json.loads(config["parameters"]["deen_manifest"]["string_value"])
    served = {p.key: p.value for p in model.metadata_props}
    embedded = json.loads(served[METADATA_KEY])  # the export's own manifest, and its hash
    assert {key: carried[key] for key in embedded} == embedded
    assert carried["sha256"] == hashlib.sha256(
        (repo / "deen_onnx" / "1" / "model.onnx").read_bytes()).hexdigest()
    assert not (repo / "deen_trt").exists()
    py_compile.compile(str(repo / "client.py"), doraise=True)
    again = _deen("export", "--engine", "triton", "--checkpoint", str(checkpoint), "--out",
                  str(repo))
    assert again.returncode == 1 and "already exists" in again.stderr


def test_triton_tensorrt_config_and_option_checks():
    text = model_config("deen_trt", "tensorrt", _onnx_manifest(), ServingOptions(), gpu=True)
    config = parse_pbtxt(text)
    assert config["backend"] == "tensorrt" and config["instance_group"][0]["kind"] == "KIND_GPU"
    assert config["output"][0]["dims"] == [6 * 1024]
    with pytest.raises(DeenError, match="preferred"):
        ServingOptions(max_batch=4, preferred_batches=(8,))


@pytest.mark.skipif(TRT_MISSING is None, reason="TensorRT and a GPU are present")
def test_triton_with_trt_needs_tensorrt(checkpoint, tmp_path):
    result = _deen("export", "--engine", "triton", "--with-trt", "--checkpoint",
                   str(checkpoint), "--out", str(tmp_path / "repo"))
    assert result.returncode == 1 and "TensorRT" in result.stderr
    assert not (tmp_path / "repo").exists()


@needs_trt
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_trt_engine_builds_verifies_and_splits_batches(tmp_path, precision):
    from deen.backends.tensorrt_backend import TensorRTEmbedder
    from deen.backends.torch_backend import TorchEmbedder
    from deen.embedding import EmbeddingConfig
    from deen.export.tensorrt_build import export_tensorrt

    model, source = random_model("regdb", 0)
    result = export_tensorrt(
        model, tmp_path / "m.engine", config=EmbeddingConfig(flip=False), source=source,
        input_size=SIZE, options=TrtBuildOptions(precision=precision, max_batch=4,
                                                 timing_cache=tmp_path / "cache"))
    out, manifest = result.model_path, result.manifest
    assert manifest["verification"]["passed"] and (tmp_path / "cache").is_file()
    engine = TensorRTEmbedder(out)
    images = np.random.default_rng(0).standard_normal((9, 3, *SIZE)).astype(np.float32)
    modality = np.arange(9) % 2
    got = engine.run(images, modality)  # 9 rows through a max-4 profile
    expected = TorchEmbedder(model, EmbeddingConfig(flip=False), "cuda", SIZE).run(images,
                                                                                 modality)
    cos = (got * expected).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    assert got.shape == expected.shape and cos.min() >= 0.999
    assert torch.cuda.is_available()


def test_open_embedder_knows_engine_files(tmp_path):
    from deen.backends import open_embedder

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not an engine")
    with pytest.raises(DeenError, match="manifest"):
        open_embedder(engine)
    assert Path(engine).exists()
