"""``device``: a device this machine does not have is one clear line, for every model kind
(checkpoint, ONNX, OpenVINO IR), from the library and from the commands that open models."""

from __future__ import annotations

import subprocess
import sys

import onnxruntime as ort
import pytest
import torch

from deen.backends import open_embedder
from deen.backends.devices import NVIDIA_GPUS, _nvidia_gpus, openvino_device
from deen.embedding import EmbeddingConfig
from deen.errors import BadValueError, ParameterError
from deen.export.onnx_export import export_onnx
from deen.models.checkpoint import load_checkpoint

pytest.importorskip("openvino")
NO_TORCH_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="PyTorch has a CUDA GPU here")
NO_ORT_CUDA = pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(),
                                 reason="ONNX Runtime has a CUDA provider here")
NO_GPU = pytest.mark.skipif(_nvidia_gpus(NVIDIA_GPUS), reason="an NVIDIA GPU is here")


@pytest.fixture(scope="module")
def models(small_model, tmp_path_factory):
    """The small checkpoint and its ONNX and OpenVINO fp32 exports."""
    from deen.export.openvino_export import export_openvino

    folder = tmp_path_factory.mktemp("devices")
    loaded = load_checkpoint(small_model)
    onnx = export_onnx(loaded.model, folder / "m.onnx", config=EmbeddingConfig(),
                       source=loaded.source, input_size=loaded.input_size)
    xml = export_openvino(loaded.model, folder / "m.xml", config=EmbeddingConfig(),
                          source=loaded.source, input_size=loaded.input_size,
                          onnx_path=onnx.model_path)
    return {".pt": small_model, ".onnx": onnx.model_path, ".xml": xml.model_path}


def _deen(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deen", *args], capture_output=True,
                          text=True, timeout=300)


@NO_TORCH_CUDA
def test_a_checkpoint_on_cuda_without_a_gpu(models):
    with pytest.raises(ParameterError) as refused:
        open_embedder(models[".pt"], device="cuda")
    assert str(refused.value) in ("device=cuda: no CUDA GPU here (this PyTorch is a CPU-only "
                                  "build)", f"device=cuda: no CUDA GPU here (PyTorch "
                                  f"{torch.__version__} finds none)")


@NO_ORT_CUDA
def test_an_onnx_model_on_cuda_without_a_gpu(models):
    with pytest.raises(ParameterError, match=r"^device=cuda: no CUDA GPU here \(this ONNX "
                                             r"Runtime has no CUDA provider; it has .*CPU\)$"):
        open_embedder(models[".onnx"], device="cuda")


@NO_GPU
def test_an_openvino_model_on_cuda_without_a_gpu(models):
    with pytest.raises(ParameterError, match=r"^device=cuda: no CUDA GPU here \(OpenVINO's "
                                             r"devices here: .*CPU.*\)$"):
        open_embedder(models[".xml"], device="cuda")


def test_openvino_device_names_are_checked_against_the_machine(models):
    import openvino as ov

    core = ov.Core()
    assert openvino_device(None, core) == "CPU" and openvino_device("cpu", core) == "CPU"
    assert openvino_device("AUTO", core) == "AUTO"
    assert openvino_device("AUTO:CPU", core) == "AUTO:CPU"
    absent = next(d for d in ("NPU", "GPU", "GNA") if d not in core.available_devices)
    for name in (absent, f"HETERO:{absent},CPU"):
        with pytest.raises(ParameterError, match=rf"^device={name}: OpenVINO has no {absent} "
                                                 r"here \(its devices here: .*CPU"):
            openvino_device(name, core)
    assert open_embedder(models[".xml"], device="AUTO").backend == "openvino-fp32"


def test_a_device_that_is_no_device_is_an_argument_error(models):
    for kind in (".pt", ".onnx"):
        with pytest.raises(BadValueError, match=r"^device=gpu0: .* runs on cpu or cuda"):
            open_embedder(models[kind], device="gpu0")


@pytest.mark.skipif(torch.cuda.is_available() or _nvidia_gpus(NVIDIA_GPUS)
                    or "CUDAExecutionProvider" in ort.get_available_providers(),
                    reason="a CUDA GPU is here")
def test_eval_and_gallery_add_say_it_in_one_line(models, tmp_path):
    from deen.datasets.synth import write_synthetic_dataset

    root = write_synthetic_dataset(tmp_path / "sysu", "sysu", identities=4, size=(64, 32))
    crops = root / "cam1" / "0001"
    for kind, command in ((".pt", "eval"), (".onnx", "gallery"), (".xml", "eval"),
                          (".xml", "gallery")):
        args = (["eval", "--dataset", "sysu", "--root", str(root)] if command == "eval" else
                ["gallery", "add", "ann", "--images", str(crops), "--modality", "visible",
                 "--gallery", str(tmp_path / "g.db")])
        done = _deen(*args, "--model", str(models[kind]), "--device", "cuda")
        assert done.returncode == 1, (kind, command, done.stderr)
        assert done.stdout == "" and done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith(f"deen {command}{' add' if command == 'gallery' else ''}"
                                      ": error: --device cuda: no CUDA GPU here ("), done.stderr
    assert not (tmp_path / "g.db").exists()


@NO_TORCH_CUDA
def test_a_gpu_that_the_runtime_cannot_use_is_named_as_such(models, tmp_path, monkeypatch):
    """Where the NVIDIA driver lists a GPU (here a stand-in for its /proc folder), cuda on a
    runtime without CUDA says that runtime cannot use it, not that there is none."""
    from deen.backends import devices

    gpus = tmp_path / "gpus"
    (gpus / "0000:01:00.0").mkdir(parents=True)
    monkeypatch.setattr(devices, "NVIDIA_GPUS", gpus)
    with pytest.raises(ParameterError, match=r"^device=cuda: PyTorch cannot use the CUDA GPU "
                                             r"here \("):
        open_embedder(models[".pt"], device="cuda")
    with pytest.raises(ParameterError, match=r"^device=cuda: OpenVINO does not run on CUDA "
                                             r"GPUs \(its devices here: .*CPU.*\); on a CUDA GPU "
                                             r"use the .onnx export or a TensorRT engine$"):
        open_embedder(models[".xml"], device="cuda")
