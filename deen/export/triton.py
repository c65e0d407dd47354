"""``deen export --engine triton``: a Triton Inference Server model repository.

Users who serve DEEN from a shared GPU or CPU box run NVIDIA Triton rather than a home-made
server. The repository holds the verified ONNX export (``onnxruntime`` backend) and, where
one was built, the TensorRT plan (``tensorrt`` backend), each with a ``config.pbtxt`` whose
inputs and outputs come from the export's manifest (one place for names, dims and types),
dynamic batching with preferred sizes, and an instance group; plus ``client.py``, a small
``tritonclient`` example that embeds images against a running server.

Layout::

    REPO/deen_onnx/config.pbtxt      REPO/deen_onnx/1/model.onnx
    REPO/deen_trt/config.pbtxt       REPO/deen_trt/1/model.plan      (with an engine)
    REPO/client.py
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deen.backends.artifact import (
    INPUT_IMAGES,
    INPUT_MODALITY,
    MANIFEST_PARAMETER,
    OUTPUT_EMBEDDING,
)
from deen.errors import BadValueError, DeenError
from deen.export.base import ExportResult, ExportSettings
from deen.export.tensorrt_build import TrtBuildOptions
from deen.fileio import require_new_folder

if TYPE_CHECKING:
    from deen.models.deen import DEEN

ONNX_MODEL, TRT_MODEL = "deen_onnx", "deen_trt"
_TRITON_TYPES = {"float32": "TYPE_FP32", "int64": "TYPE_INT64", "float16": "TYPE_FP16"}


@dataclass(frozen=True)
class ServingOptions:
    max_batch: int = 32
    preferred_batches: tuple[int, ...] = (8, 16, 32)
    instances: int = 1
    max_queue_delay_us: int = 2000

    def __post_init__(self) -> None:
        for name in ("max_batch", "instances"):
            if getattr(self, name) < 1:
                raise BadValueError(name, getattr(self, name), "must be at least 1")
        if self.max_queue_delay_us < 0:
            raise BadValueError("max_queue_delay_us", self.max_queue_delay_us,
                                 "must not be negative")
        if any(b < 1 or b > self.max_batch for b in self.preferred_batches):
            raise BadValueError("preferred_batches", list(self.preferred_batches),
                                 f"preferred batch sizes must lie in 1..{self.max_batch} "
                                 "({max_batch})", ("max_batch",))


@dataclass(frozen=True)
class TritonOptions:
    """The ``triton`` format's options: how the repository serves (batching, instances) and,
    with ``with_trt``, the TensorRT plan's build options (whose ``max_batch`` should be
    Triton's)."""

    max_batch: int = 32
    preferred_batches: tuple[int, ...] = (8, 16, 32)
    instances: int = 1
    with_trt: bool = False
    build: TrtBuildOptions = field(default_factory=TrtBuildOptions)

    def serving(self) -> ServingOptions:
        """Preferred sizes above ``max_batch`` are left out (at least 1 remains)."""
        preferred = tuple(b for b in self.preferred_batches if b <= self.max_batch) or (1,)
        return ServingOptions(max_batch=self.max_batch, preferred_batches=preferred,
                              instances=self.instances)

    def trt(self, precision: str) -> TrtBuildOptions:
        return replace(self.build, precision=precision)


def preflight(settings: ExportSettings) -> None:
    """What fails before a checkpoint is loaded: the options, and TensorRT's presence when a
    plan is asked for."""
    options = settings.options or TritonOptions()
    options.serving()
    if options.with_trt:
        options.trt(settings.precision)
        from deen.backends.tensorrt_env import require_tensorrt

        require_tensorrt()


def export(model: DEEN, out: Path, settings: ExportSettings) -> ExportResult:
    """The :class:`~deen.export.base.Exporter` of the ``triton`` format: a verified ONNX
    export (int8 when asked, else fp32) and, with ``with_trt``, a verified TensorRT plan of
    ``settings.precision``, written as a new repository folder ``out``."""
    from deen.export.onnx_export import export_onnx
    from deen.export.tensorrt_build import export_tensorrt

    out = Path(out)
    options = settings.options or TritonOptions()
    require_new_folder(out)
    preflight(settings)
    with tempfile.TemporaryDirectory(prefix="deen-triton-") as scratch:
        onnx = export_onnx(model, Path(scratch) / "model.onnx", config=settings.config,
                           source=settings.source, opset=settings.opset,
                           input_size=settings.input_size,
                           precision="int8" if settings.precision == "int8" else "fp32",
                           calib=settings.calib)
        engine = None
        if options.with_trt:
            engine = export_tensorrt(
                model, Path(scratch) / "model.plan", config=settings.config,
                source=settings.source, input_size=settings.input_size,
                options=options.trt(settings.precision),
                onnx_path=onnx.model_path).model_path
        write_repository(out, onnx.model_path, onnx.manifest, options.serving(), engine)
    return replace(onnx, model_path=out, manifest_path=None,
                   usage=f"serve it: tritonserver --model-repository {out}; try it: python "
                         f"{out}/client.py IMAGE... --modality 0 ...")


def model_config(name: str, backend: str, manifest: dict[str, Any], options: ServingOptions,
                 gpu: bool) -> str:
    """``config.pbtxt`` text for one model, from the export manifest's input/output spec.

    Triton's dims leave out the batch axis; ``modality`` is one value per image, so it is
    declared ``dims: [ 1 ]`` and reshaped to a scalar per row (the graph's input is N)."""
    images = manifest["inputs"][INPUT_IMAGES]
    modality = manifest["inputs"][INPUT_MODALITY]
    embedding = manifest["output"][OUTPUT_EMBEDDING]

    def dims(shape: list[Any]) -> str:
        return ", ".join(str(int(d)) for d in shape[1:])

    preferred = ", ".join(str(b) for b in options.preferred_batches)
    kind = "KIND_GPU" if gpu else "KIND_CPU"
    # The export manifest rides in the config (protobuf text string: ASCII JSON with its
    # backslashes and quotes escaped), so a triton:// client checks what it is served.
    text = json.dumps(manifest, ensure_ascii=True, sort_keys=True)
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f"""name: "{name}"
backend: "{backend}"
max_batch_size: {options.max_batch}
input [
  {{
    name: "{INPUT_IMAGES}"
    data_type: {_TRITON_TYPES[images["dtype"]]}
    dims: [ {dims(images["shape"])} ]
  }},
  {{
    name: "{INPUT_MODALITY}"
    data_type: {_TRITON_TYPES[modality["dtype"]]}
    dims: [ 1 ]
    reshape: {{ shape: [ ] }}
  }}
]
output [
  {{
    name: "{OUTPUT_EMBEDDING}"
    data_type: {_TRITON_TYPES[embedding["dtype"]]}
    dims: [ {dims(embedding["shape"])} ]
  }}
]
dynamic_batching {{
  preferred_batch_size: [ {preferred} ]
  max_queue_delay_microseconds: {options.max_queue_delay_us}
}}
instance_group [
  {{
    count: {options.instances}
    kind: {kind}
  }}
]
parameters {{
  key: "{MANIFEST_PARAMETER}"
  value: {{ string_value: "{escaped}" }}
}}
"""


def write_repository(out: Path, onnx_path: Path, manifest: dict[str, Any],
                     options: ServingOptions, engine_path: Path | None = None) -> list[Path]:
    """Write the repository into the new folder ``out`` (built beside it, then renamed, so a
    failure leaves nothing); returns the files written."""
    out = Path(out)
    require_new_folder(out)
    if not manifest.get("dynamic_batch", True):
        raise DeenError(f"{onnx_path}: Triton batching needs a dynamic-batch export")
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        (tmp / ONNX_MODEL / "1").mkdir(parents=True)
        shutil.copyfile(onnx_path, tmp / ONNX_MODEL / "1" / "model.onnx")
        # The onnxruntime backend runs on CPU or GPU; KIND_GPU falls back to an error on a
        # CPU-only server, so the ONNX model is served on CPU unless a GPU export is asked for.
        (tmp / ONNX_MODEL / "config.pbtxt").write_text(
            model_config(ONNX_MODEL, "onnxruntime", manifest, options, gpu=False))
        if engine_path is not None:
            (tmp / TRT_MODEL / "1").mkdir(parents=True)
            shutil.copyfile(engine_path, tmp / TRT_MODEL / "1" / "model.plan")
            (tmp / TRT_MODEL / "config.pbtxt").write_text(
                model_config(TRT_MODEL, "tensorrt", manifest, options, gpu=True))
        prep = manifest["inputs"][INPUT_IMAGES]["preprocessing"]
        height, width = prep["input_size_hw"]
        (tmp / "client.py").write_text(CLIENT_EXAMPLE.format(
            model=ONNX_MODEL, images=INPUT_IMAGES, modality=INPUT_MODALITY,
            embedding=OUTPUT_EMBEDDING, height=height, width=width, mean=list(prep["mean"]),
            std=list(prep["std"])))
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sorted(p for p in out.rglob("*") if p.is_file())


CLIENT_EXAMPLE = '''"""Embed person crops with a Triton server serving this repository.

    pip install "tritonclient[http]" numpy pillow
    tritonserver --model-repository REPO          # or the NGC tritonserver container
    python REPO/client.py visible.jpg infrared.png --modality 0 1

Preprocessing as the export's manifest records it: RGB, Pillow LANCZOS resize to
{width}x{height} (WxH), /255, (x - mean) / std per channel, CHW.
"""

import argparse

import numpy as np
from PIL import Image

MEAN = np.array({mean}, np.float32)
STD = np.array({std}, np.float32)


def preprocess(path):
    image = Image.open(path).convert("RGB").resize(({width}, {height}), Image.LANCZOS)
    array = (np.asarray(image, np.float32) / 255.0 - MEAN) / STD
    return array.transpose(2, 0, 1)


def main():
    import tritonclient.http as http

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+")
    parser.add_argument("--modality", type=int, nargs="+", required=True,
                        help="0 visible, 1 infrared, one per image")
    parser.add_argument("--url", default="localhost:8000")
    parser.add_argument("--model", default="{model}")
    args = parser.parse_args()
    if len(args.modality) != len(args.images):
        parser.error("give one --modality value per image")
    batch = np.stack([preprocess(p) for p in args.images])
    codes = np.array(args.modality, np.int64).reshape(-1, 1)
    client = http.InferenceServerClient(url=args.url)
    inputs = [http.InferInput("{images}", list(batch.shape), "FP32"),
              http.InferInput("{modality}", list(codes.shape), "INT64")]
    inputs[0].set_data_from_numpy(batch)
    inputs[1].set_data_from_numpy(codes)
    result = client.infer(args.model, inputs,
                          outputs=[http.InferRequestedOutput("{embedding}")])
    embeddings = result.as_numpy("{embedding}")
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    print("cosine similarities:")
    print(np.round(embeddings @ embeddings.T, 3))


if __name__ == "__main__":
    main()
'''
