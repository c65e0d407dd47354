"""``deen bench``: build the requested backends from one model and time them in one run."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import torch

from deen import formats
from deen.backends.base import Embedder
from deen.backends.devices import torch_device
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
from deen.errors import BadValueError, DeenError, redact_url
from deen.eval.evaluate import protocol_settings
from deen.export.base import ExportSettings
from deen.modality import Modality
from deen.models.checkpoint import SourceInfo
from deen.models.deen import DEEN
from deen.models.embedding_network import EmbeddingNetwork
from deen.preprocess import DEFAULT_INPUT_SIZE, preprocess
from deen.synthetic import make_people, render_person
from deen.variants import DEFAULT_VARIANT

#: Every backend is measured against this one.
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
    is several times *slower* than fp32 (benchmarks/README.md)."""
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


class BackendBuilder:
    """Builds ``deen bench`` backends from one model, by their rows in :mod:`deen.formats`.

    Rows without an exporter (PyTorch) embed the model in memory through their embedder's
    ``from_model``; the others are exported into ``workdir`` (verified, as every export) and
    opened with their embedder. An export is made once per format and precision, and
    formats built from the fp32 ONNX export share it.
    """

    def __init__(self, model: DEEN, config: EmbeddingConfig, source: SourceInfo,
                 input_size: tuple[int, int], workdir: Path, calib: Path | None,
                 device: str = "cpu") -> None:
        self.model, self.config, self.source = model, config, source
        self.input_size, self.workdir, self.calib, self.device = (input_size, workdir, calib,
                                                                 device)
        self._exports: dict[tuple[str, str], Path] = {}

    def exported(self, row: formats.Format, precision: str) -> Path:
        key = (row.name, precision)
        if key not in self._exports:
            assert row.exporter is not None
            onnx = self.exported(formats.get("onnx"), "fp32") if row.from_fp32_onnx else None
            settings = ExportSettings(self.config, self.source, self.input_size,
                                      precision=precision, calib=self.calib, onnx_path=onnx)
            out = self.workdir / f"{row.name}-{precision}{row.suffixes[0]}"
            self._exports[key] = formats.load(row.exporter)(self.model, out,
                                                            settings).model_path
        return self._exports[key]

    def build(self, name: str) -> Embedder:
        """One backend; the PyTorch ones on ``device`` (CPU formats on the CPU, GPU formats
        on the GPU). Raises :class:`DeenError` when this machine cannot run it (reported as
        skipped)."""
        row, backend = bench_backend(name)
        on_cpu = row.device is formats.Device.CPU or (row.device is formats.Device.ANY
                                                      and self.device == "cpu")
        if backend.precision == "bf16" and on_cpu and not cpu_has_bf16():
            raise DeenError(f"this CPU has no bf16 instructions (avx512_bf16 or amx_bf16): "
                            f"{row.runtime} would emulate bf16 or run it as fp32")
        assert row.embedder is not None
        embedder_type = formats.load(row.embedder)
        if not row.exportable:
            return embedder_type.from_model(self.model, config=self.config,
                                            device=self.device, input_size=self.input_size,
                                            precision=backend.precision, **backend.options)
        path = self.exported(row, backend.precision)
        return embedder_type.open(path, device="cpu" if on_cpu else None)

    def open_given(self, location: str | Path) -> tuple[str, Embedder]:
        """A model made elsewhere (an exported file or ``triton://HOST:PORT/NAME``), checked
        to be an export of the benchmarked model at the benchmarked size and settings, so
        its accuracy columns compare like with like. Returns its report label and embedder.
        """
        from deen.backends import open_embedder
        from deen.backends.triton_backend import is_triton_url

        where = redact_url(str(location))
        label = (f"served:{urlsplit(where).path.strip('/')}" if is_triton_url(location)
                 else f"file:{Path(location).name}")
        embedder = open_embedder(location)
        manifest = getattr(embedder, "manifest", None)
        if manifest is None:
            raise DeenError(f"{where}: not an exported model (it has no manifest to check "
                            "against the benchmarked model)")
        made_from = manifest.get("source", {})
        wanted = asdict(self.source)
        if any(made_from.get(key) != wanted[key] for key in ("kind", "sha256", "seed")):
            raise DeenError(f"{where}: exported from {_describe(made_from)}, not from the "
                            f"benchmarked {_describe(wanted)}")
        if embedder.variant != self.model.variant.name:
            raise DeenError(f"{where}: a {embedder.variant} variant model; the bench measures "
                            f"a {self.model.variant.name} one")
        if tuple(embedder.input_size) != tuple(self.input_size):
            size = embedder.input_size
            raise DeenError(f"{where}: takes {size[0]}x{size[1]} images; the bench measures "
                            f"at {self.input_size[0]}x{self.input_size[1]}")
        if embedder.config != self.config:
            raise DeenError(f"{where}: exported with {embedder.config.describe()}, the bench "
                            f"measures {self.config.describe()}")
        return label, embedder


def _describe(source: dict) -> str:
    """A model source as a reader knows it: the checkpoint, or the random seed."""
    if source.get("kind") == "random-init":
        return f"random model (seed {source.get('seed')})"
    return f"{source.get('checkpoint') or 'checkpoint'} (sha256 {str(source.get('sha256'))[:12]})"


def bench_backend(name: str) -> tuple[formats.Format, formats.BenchBackend]:
    """A backend's row and its entry there."""
    check_backends([name])
    return formats.bench_backends()[name]


def check_backends(names: list[str]) -> None:
    """Every name must be a backend of the format table; checked before any work."""
    known = formats.bench_backends()
    unknown = [name for name in names if name not in known]
    if unknown:
        raise BadValueError("backends", ",".join(names), f"unknown {', '.join(unknown)}; "
                             f"choose from {', '.join(known)}")


def bench_model(checkpoint: Path | None, variant: str | None,
                input_size: tuple[int, int] | None, log: Callable[[str], None] = print
                ) -> tuple[DEEN, SourceInfo, tuple[int, int]]:
    """The model ``deen bench`` times: a checkpoint at its trained size (or ``input_size``:
    the network takes any), or without one a seeded random DEEN, which times honestly but
    whose accuracy columns only compare backends with each other."""
    from deen.models.checkpoint import load_checkpoint, random_model

    if checkpoint is None:
        model, source = random_model(variant or DEFAULT_VARIANT, 0)
        log("no checkpoint: timing a seeded RANDOM DEEN (accuracy columns compare backends "
            "with each other, not with a trained model)")
        return model, source, tuple(input_size or DEFAULT_INPUT_SIZE)  # type: ignore[return-value]
    loaded = load_checkpoint(checkpoint, variant=variant)
    trained = tuple(loaded.input_size)
    if input_size is not None and tuple(input_size) != trained:
        log(f"timing {checkpoint} at {input_size[0]}x{input_size[1]} (trained at "
            f"{trained[0]}x{trained[1]}; the network takes any size)")
        return loaded.model, loaded.source, tuple(input_size)  # type: ignore[return-value]
    return loaded.model, loaded.source, trained  # type: ignore[return-value]


def run_bench(model: DEEN, source: SourceInfo, input_size: tuple[int, int],
              backends: list[str], batches: list[int], config: EmbeddingConfig,
              runs: int, warmup: int, workdir: Path, calib: Path | None = None,
              people: int = 24, dataset: tuple[str, Path] | None = None,
              device: str = "cpu", models: Sequence[str | Path] = (),
              log: Callable[[str], None] = print) -> BenchReport:
    """Build ``backends`` from ``model``, measure their accuracy against PyTorch fp32 (on
    ``dataset``'s test protocol, e.g. ``("sysu", root)``, else on ``people`` generated
    people), then time them interleaved at each batch size.

    ``models`` are exports of the same model made elsewhere, timed beside the built
    backends: files (an ``.onnx``, an OpenVINO ``.xml``, a TensorRT engine) or served
    models (``triton://HOST:PORT/NAME``), whose times include the trip to the server."""
    check_backends(backends)
    torch_device(device)  # a CUDA device that is not here: one line, before any work
    model = model.cpu().eval()
    split = None
    if dataset is not None:  # before building anything: a bad root fails fast
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
    builder = BackendBuilder(model, config, source, input_size, workdir, calib, device)
    sample, codes = people_batch(1, input_size)
    given: dict[str, Embedder] = {}
    given_info = []
    for location in models:  # first, so a bad one fails before the long builds
        log(f"opening {redact_url(str(location))} ...")
        rss_before, start = rss_mib(), time.perf_counter()
        name, embedder = builder.open_given(location)
        embedder.run(sample, codes)
        given_info.append(BackendInfo(name, 1000 * (time.perf_counter() - start),
                                      rss_mib() - rss_before))
        given[name] = embedder
    began = time.perf_counter()
    for number, name in enumerate(names, 1):
        log(f"building {name} ({number}/{len(names)}, {time.perf_counter() - began:.0f} s "
            "so far) ...")
        rss_before, start = rss_mib(), time.perf_counter()
        try:
            embedder = builder.build(name)
            embedder.run(sample, codes)
        except DeenError as exc:
            report.skipped[name] = str(exc)
            log(f"  skipped: {exc}")
            continue
        log(f"  built in {time.perf_counter() - start:.1f} s")
        report.backends.append(BackendInfo(name, 1000 * (time.perf_counter() - start),
                                           rss_mib() - rss_before))
        built[name] = embedder
    for info in given_info:
        report.backends.append(info)
    built.update(given)
    if split is not None:
        log(f"accuracy on {report.settings['accuracy_on']} ...")
        report.accuracy = protocol_accuracy(built, REFERENCE, split)
    else:
        gallery, gallery_codes = retrieval_set(people, input_size)
        reference = built[REFERENCE].run(gallery, gallery_codes)
        report.accuracy = [accuracy_against(reference, embedder.run(gallery, gallery_codes),
                                            people, name) for name, embedder in built.items()]
    log(f"timing {', '.join(built)} at batches {batches} ({runs} interleaved runs each) ...")
    on_gpu = device == "cuda" or any(
        bench_backend(name)[0].device is formats.Device.GPU for name in built
        if name in formats.bench_backends())
    report.timings = time_backends(built, batches, input_size, runs, warmup,
                                   synchronize=torch.cuda.synchronize if on_gpu else None,
                                   reference=REFERENCE)
    for t in report.timings:
        t.gflops_per_s = gflop * t.batch / (t.p50_ms / 1000)
    return report
