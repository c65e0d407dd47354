"""``deen bench``: build the requested backends from one model and time them in one run."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from deen.backends.base import Embedder
from deen.backends.torch_backend import TorchEmbedder
from deen.bench.harness import (
    BackendInfo,
    BenchReport,
    accuracy_against,
    people_batch,
    protocol_accuracy,
    rss_mib,
    time_backends,
)
from deen.embedding import EmbeddingConfig
from deen.errors import DeenError
from deen.eval.evaluate import protocol_settings
from deen.modality import Modality
from deen.models.checkpoint import SourceInfo
from deen.models.deen import DEEN
from deen.models.embedding_network import EmbeddingNetwork
from deen.preprocess import preprocess
from deen.synthetic import make_people, render_person

BACKENDS = ("pytorch-fp32", "pytorch-bf16", "pytorch-fp16", "pytorch-compile",
            "onnxruntime-fp32", "onnxruntime-int8", "openvino-fp32", "openvino-bf16",
            "openvino-int8", "tensorrt")
REFERENCE = "pytorch-fp32"


def cpu_flags() -> set[str]:
    """The CPU's instruction-set flags as /proc/cpuinfo names them (empty off Linux)."""
    return _cpu_info()[1]


def _cpu_info() -> tuple[str, set[str]]:
    """The CPU's model name and instruction-set flags (Linux; elsewhere: none known)."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
        model = next(line.split(":", 1)[1].strip() for line in info.splitlines()
                     if line.startswith("model name"))
        flags = set(next(line for line in info.splitlines() if line.startswith("flags"))
                    .split(":", 1)[1].split())
    except (OSError, StopIteration):
        flags = set()
    return model, flags


def isa_class(simd: set[str] | list[str]) -> str:
    """The instruction-set class that decides CPU speed-up ratios, as a folder name.

    Benchmark results are kept per class (``benchmarks/results/<class>/``): int8 gains most
    with VNNI or AMX and bf16 needs bf16 instructions, so ratios from one class say little
    about another.
    """
    flags = set(simd)
    if flags & {"amx_int8", "amx_tile"}:
        return "amx"
    if "avx512_vnni" in flags:
        return "avx512-vnni-bf16" if "avx512_bf16" in flags else "avx512-vnni"
    if "avx512f" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2-vnni" if "avx_vnni" in flags else "avx2"
    return "baseline"


def cpu_has_bf16() -> bool:
    """Whether the CPU computes in bf16 natively; without it PyTorch emulates bf16, which
    measured 5–16× *slower* than fp32 on this project's AVX2 build machine."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def machine_description() -> dict[str, object]:
    model, flags = _cpu_info()
    simd = sorted(f for f in flags if f.startswith(("avx512", "avx2", "amx")) or
                  f in ("avx_vnni", "avx512_bf16", "avx512_vnni"))
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"description": f"{model}, {os.cpu_count()} CPUs, SIMD: {' '.join(simd) or 'n/a'}"
                           + (f", GPU: {gpu}" if gpu else ""),
            "cpu": model, "cpus": os.cpu_count(), "simd": simd, "gpu": gpu,
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "date": time.strftime("%Y-%m-%d", time.gmtime())}


def _median_rate(call: Callable[[], object], ops: float, repeats: int) -> float:
    """``ops`` / the median seconds of ``repeats`` calls (after one warm-up), in G/s."""
    call()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return ops / float(np.median(seconds)) / 1e9


def gemm_gflops(size: int = 1024, repeats: int = 7) -> float:
    """The machine's measured fp32 matrix-multiply rate (PyTorch, all threads)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    return _median_rate(lambda: a @ b, 2 * size**3, repeats)


def int8_gemm_gops(size: int = 1024, repeats: int = 7) -> float:
    """The machine's measured int8 matrix-multiply rate: ONNX Runtime's ``MatMulInteger``
    (uint8 activations × int8 weights, int32 sums, all threads), the kernel its int8
    convolutions use.

    Why: divided by PyTorch fp32's achieved rate on the model, it bounds what any int8
    backend can gain on this CPU (about 2× fp32 on AVX2, more with VNNI or AMX), so a
    speed target can be judged against what the instructions allow.
    """
    import onnxruntime as ort
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    weights = rng.integers(-127, 128, (size, size), dtype=np.int8)
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "int8_gemm",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [size, size])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [size, size])],
        [helper.make_tensor("b", TensorProto.INT8, [size, size], weights.tobytes(), raw=True)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    a = rng.integers(0, 256, (size, size), dtype=np.uint8)
    return _median_rate(lambda: session.run(None, {"a": a}), 2 * size**3, repeats)


def model_gflop(model: DEEN, config: EmbeddingConfig, input_size: tuple[int, int]) -> float:
    """GFLOP of one image's embedding (one pass, or two with flip), counted by PyTorch."""
    from torch.utils.flop_counter import FlopCounterMode

    network = EmbeddingNetwork(model, config).eval()
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        network(torch.zeros(1, 3, *input_size), torch.zeros(1, dtype=torch.int64))
    return counter.get_total_flops() / 1e9


def retrieval_set(people: int, input_size: tuple[int, int], seed: int = 7
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``people`` visible images then the same people's infrared images, preprocessed."""
    rng = np.random.default_rng(seed)
    persons = make_people(people, seed)
    images = [render_person(p, m, rng) for m in (Modality.VISIBLE, Modality.INFRARED)
              for p in persons]
    codes = np.array([0] * people + [1] * people, dtype=np.int64)
    return preprocess(images, size=input_size), codes


def build_backend(name: str, model: DEEN, config: EmbeddingConfig, source: SourceInfo,
                  input_size: tuple[int, int], workdir: Path, calib: Path | None,
                  device: str = "cpu") -> Embedder:
    """One backend; the PyTorch ones on ``device`` (ONNX Runtime stays on CPU, TensorRT on
    the GPU). Raises :class:`DeenError` when this machine cannot run it (reported as
    skipped)."""
    if name == "pytorch-fp32":
        return TorchEmbedder(model, config, device, input_size)
    if name == "pytorch-bf16":
        if device == "cpu" and not cpu_has_bf16():
            raise DeenError("this CPU has no bf16 instructions (avx512_bf16 or amx_bf16): "
                            "PyTorch would emulate bf16, slower than fp32")
        return TorchEmbedder(model, config, device, input_size, precision="bf16")
    if name == "pytorch-fp16":
        return TorchEmbedder(model, config, device, input_size, precision="fp16")
    if name == "pytorch-compile":
        return TorchEmbedder(model, config, device, input_size, compile=True)
    from deen.backends.onnxrt_backend import OnnxRuntimeEmbedder
    from deen.export.onnx_export import export_onnx

    fp32_onnx = workdir / "fp32.onnx"  # one verified fp32 export, shared by the backends

    def shared_fp32_onnx() -> Path:
        if not fp32_onnx.is_file():
            export_onnx(model, fp32_onnx, config=config, source=source, input_size=input_size)
        return fp32_onnx

    if name == "onnxruntime-fp32":
        return OnnxRuntimeEmbedder(shared_fp32_onnx(), device="cpu")
    if name.startswith("openvino-"):
        from deen.backends.openvino_backend import OpenVinoEmbedder
        from deen.export.openvino_export import export_openvino

        precision = name.removeprefix("openvino-")
        if precision == "bf16" and not cpu_has_bf16():
            raise DeenError("this CPU has no bf16 instructions (avx512_bf16 or amx_bf16): "
                            "OpenVINO would run the bf16 IR in fp32, as openvino-fp32")
        result = export_openvino(model, workdir / f"{name}.xml", config=config, source=source,
                                 input_size=input_size, precision=precision, calib=calib,
                                 onnx_path=shared_fp32_onnx())
        return OpenVinoEmbedder(result.model_path)
    if name == "onnxruntime-int8":
        result = export_onnx(model, workdir / "int8.onnx", config=config, source=source,
                             input_size=input_size, precision="int8", calib=calib)
        return OnnxRuntimeEmbedder(result.model_path, device="cpu")
    if name == "tensorrt":  # fp16, the usual deployment; DeenError (→ skipped) without TRT
        from deen.backends.tensorrt_backend import TensorRTEmbedder
        from deen.export.tensorrt_build import TrtBuildOptions, export_tensorrt

        out, _ = export_tensorrt(model, workdir / "model.engine", config=config, source=source,
                                 input_size=input_size,
                                 options=TrtBuildOptions(precision="fp16"))
        return TensorRTEmbedder(out)
    raise DeenError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")


def run_bench(model: DEEN, source: SourceInfo, input_size: tuple[int, int],
              backends: list[str], batches: list[int], config: EmbeddingConfig,
              runs: int, warmup: int, workdir: Path, calib: Path | None = None,
              people: int = 24, dataset: tuple[str, Path] | None = None,
              device: str = "cpu", log: Callable[[str], None] = print) -> BenchReport:
    """Build ``backends`` from ``model``, measure their accuracy against PyTorch fp32 (on
    ``dataset``'s test protocol, e.g. ``("sysu", root)``, else on ``people`` generated
    people), then time them interleaved at each batch size."""
    model = model.cpu().eval()
    split = None
    if dataset is not None:  # before building anything: a bad --root fails fast
        (setting, splits), *_ = protocol_settings(dataset[0], dataset[1])
        split = splits[0]
    report = BenchReport(machine_description(), {
        "input_size": list(input_size), "flip": config.flip, "batches": batches, "runs": runs,
        "warmup": warmup, "variant": model.variant.name, "model_source": source.kind,
        "pytorch_device": device,
        "accuracy_on": (f"{dataset[0]} test protocol ({setting}, {len(split.query)} queries, "
                        f"{len(split.galleries)} galleries): {dataset[1]}") if split else
                       f"{people} generated people, visible queries, infrared gallery"})
    gflop = model_gflop(model, config, input_size)
    gemm = gemm_gflops()
    report.machine["gemm_gflops"] = gemm
    report.machine["int8_gemm_gops"] = int8_gemm_gops()
    report.settings["gflop_per_image"] = gflop
    log(f"model: {gflop:.1f} GFLOP per image; machine GEMM rate {gemm:.0f} GFLOP/s")
    names = [REFERENCE, *[b for b in backends if b != REFERENCE]]
    built: dict[str, Embedder] = {}
    sample, codes = people_batch(1, input_size)
    for name in names:
        log(f"building {name} ...")
        rss_before, start = rss_mib(), time.perf_counter()
        try:
            embedder = build_backend(name, model, config, source, input_size, workdir, calib,
                                     device)
            embedder.run(sample, codes)
        except DeenError as exc:
            report.skipped[name] = str(exc)
            continue
        report.backends.append(BackendInfo(name, 1000 * (time.perf_counter() - start),
                                           rss_mib() - rss_before))
        built[name] = embedder
    if split is not None:
        log(f"accuracy on {report.settings['accuracy_on']} ...")
        report.accuracy = protocol_accuracy(built, REFERENCE, split)
    else:
        gallery, gallery_codes = retrieval_set(people, input_size)
        reference = built[REFERENCE].run(gallery, gallery_codes)
        report.accuracy = [accuracy_against(reference, embedder.run(gallery, gallery_codes),
                                            people, name) for name, embedder in built.items()]
    log(f"timing {', '.join(built)} at batches {batches} ({runs} interleaved runs each) ...")
    on_gpu = device == "cuda" or "tensorrt" in built
    report.timings = time_backends(built, batches, input_size, runs, warmup,
                                   synchronize=torch.cuda.synchronize if on_gpu else None,
                                   reference=REFERENCE)
    for t in report.timings:
        t.gflops_per_s = gflop * t.batch / (t.p50_ms / 1000)
    return report
