"""``deen export --engine trt``: a verified TensorRT engine from the project's ONNX export.

Building and running are kept apart (as Polygraphy's ``backend/trt/{loader,runner}``): this
module turns an ONNX export into a serialised engine plus manifest; running it is
:class:`deen.backends.tensorrt_backend.TensorRTEmbedder`'s job, and verification compares
that embedder with PyTorch through :mod:`deen.export.verify` like every other export.

Written against the TensorRT 10 Python API: an explicit-batch network from the ONNX parser
(every parser error reported, the build failed on any), one optimisation profile for the
dynamic batch, fp32 / fp16 / int8. int8 is *explicit* quantisation: the network is the QDQ
ONNX that ``deen export --precision int8`` makes for ONNX Runtime, so both runtimes use one
quantisation recipe and its scales. A timing cache file persists across builds. The engine's
manifest (beside it, ``FILE.engine.json``) is the ONNX manifest plus the TensorRT version,
GPU, compute capability and any plugin the engine needs, which the embedder checks before
deserialising.

Everything here that does not need TensorRT (options, profile shapes, manifest checks) is
plain Python and tested everywhere; the TensorRT calls run only where ``tensorrt`` and a GPU
exist.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deen import formats
from deen.backends.artifact import INPUT_IMAGES, INPUT_MODALITY
from deen.backends.tensorrt_env import require_tensorrt
from deen.embedding import EmbeddingConfig
from deen.errors import BadValueError, DeenError, ParameterError
from deen.export.base import ExportResult, ExportSettings, require_verified

if TYPE_CHECKING:
    from deen.models.checkpoint import SourceInfo
    from deen.models.deen import DEEN


@dataclass(frozen=True)
class TrtBuildOptions:
    precision: str = "fp16"
    min_batch: int = 1
    opt_batch: int = 8
    max_batch: int = 32
    workspace_mib: int = 2048
    timing_cache: Path | None = None
    version_compatible: bool = False
    hardware_compatible: bool = False

    def __post_init__(self) -> None:
        precisions = formats.get("trt").precisions
        if self.precision not in precisions:
            raise BadValueError("precision", self.precision,
                                 f"TensorRT engines are {', '.join(precisions)}")
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            names = ("min_batch", "opt_batch", "max_batch")
            values = (self.min_batch, self.opt_batch, self.max_batch)
            # Name the first bound broken: the one to change.
            culprit = next((n for n, lo, hi in zip(names, (1, *values[:2]), values, strict=True)
                            if hi < lo), "max_batch")
            raise BadValueError(
                culprit, getattr(self, culprit),
                "the batch profile must satisfy 1 <= {min_batch} <= {opt_batch} <= "
                f"{{max_batch}}, got {self.min_batch}, {self.opt_batch}, {self.max_batch}",
                names)
        if self.workspace_mib < 1:
            raise BadValueError("workspace_mib", self.workspace_mib, "must be positive")

    def profile_shapes(self, input_size: tuple[int, int]
                       ) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
        """(min, opt, max) shape per input for the one optimisation profile."""
        batches = (self.min_batch, self.opt_batch, self.max_batch)
        return {INPUT_IMAGES: tuple((b, 3, *input_size) for b in batches),  # type: ignore[misc]
                INPUT_MODALITY: tuple((b,) for b in batches)}  # type: ignore[misc]

    def to_manifest(self) -> dict[str, Any]:
        out = asdict(self)
        out["timing_cache"] = str(self.timing_cache) if self.timing_cache else None
        return out


def engine_manifest(onnx_manifest: dict[str, Any], options: TrtBuildOptions, trt_version: str,
                    gpu: str, compute_capability: tuple[int, int],
                    plugins: list[dict[str, str]]) -> dict[str, Any]:
    """The ONNX export's manifest, re-labelled for the engine and extended with what a
    runtime must match to deserialise it."""
    manifest = {k: v for k, v in onnx_manifest.items()
                if k not in ("file", "sha256", "verification")}
    manifest.update({
        "engine": "tensorrt", "precision": options.precision,
        "onnx_source": {"file": onnx_manifest.get("file"),
                        "sha256": onnx_manifest.get("sha256")},
        "tensorrt": {"version": trt_version, "gpu": gpu,
                     "compute_capability": list(compute_capability),
                     "build": options.to_manifest(), "plugins": plugins},
        "profile": {"min_batch": options.min_batch, "opt_batch": options.opt_batch,
                    "max_batch": options.max_batch},
    })
    return manifest


def check_onnx_precision(options: TrtBuildOptions, onnx_manifest: dict[str, Any],
                         path: Path) -> None:
    """int8 engines come from the QDQ graph (explicit quantisation) and only from it: a float
    graph has no scales for TensorRT to use, and a QDQ graph cannot build a float engine."""
    quantised = onnx_manifest.get("precision") == "int8"
    if options.precision == "int8" and not quantised:
        raise ParameterError("onnx_path", path, "an int8 engine needs the int8 (QDQ) ONNX "
                             "export; give that, or no ONNX file")
    if options.precision != "int8" and quantised:
        raise ParameterError("onnx_path", path, "this is an int8 (QDQ) export; build it with "
                             "{precision} int8, or give an fp32 export", ("precision",))


def _mark_plugin_nodes(onnx_path: Path, out: Path) -> bool:
    """Copy the graph for TensorRT's parser, pointing DeeConv nodes at the plugin's namespace
    (the parser looks plugins up by op type and a ``plugin_namespace`` attribute; ONNX Runtime
    never sees this copy). Returns whether there were any."""
    import onnx

    from deen.ops.dee_conv import ONNX_DOMAIN, ONNX_OP
    from deen.ops.trt_plugin import PLUGIN_NAMESPACE

    model = onnx.load(str(onnx_path))
    found = False
    for node in model.graph.node:
        if node.domain == ONNX_DOMAIN and node.op_type == ONNX_OP:
            node.attribute.append(onnx.helper.make_attribute("plugin_namespace",
                                                             PLUGIN_NAMESPACE))
            found = True
    onnx.save(model, str(out))
    return found


def build_engine(onnx_path: Path, out: Path, options: TrtBuildOptions,
                 input_size: tuple[int, int]) -> tuple[bytes, list[dict[str, str]]]:
    """Serialised engine for ``onnx_path`` (not written: the caller verifies it first) and the
    plugins it needs. Raises :class:`DeenError` with every parser error on failure."""
    trt = require_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    parsed = out.with_name(f".{out.name}.parse.onnx")
    plugins: list[dict[str, str]] = []
    try:
        if _mark_plugin_nodes(onnx_path, parsed):
            from deen.ops import trt_plugin

            trt_plugin.register()
            plugins.append({"name": trt_plugin.PLUGIN_ID, "python_module": trt_plugin.__name__,
                            "library": str(trt_plugin.kernel_library_path())})
        if not parser.parse_from_file(str(parsed)):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise DeenError(f"{onnx_path}: TensorRT's ONNX parser failed: "
                            + " | ".join(errors or ["no error reported"]))
    finally:
        parsed.unlink(missing_ok=True)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    if options.precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif options.precision == "int8":  # explicit: the QDQ nodes carry the scales
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.FP16)  # layers kept in float may run in fp16
    if options.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if options.hardware_compatible:
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    profile = builder.create_optimization_profile()
    for name, (low, opt, high) in options.profile_shapes(input_size).items():
        profile.set_shape(name, low, opt, high)
    config.add_optimization_profile(profile)
    cache_bytes = b""
    if options.timing_cache is not None and Path(options.timing_cache).is_file():
        cache_bytes = Path(options.timing_cache).read_bytes()
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise DeenError(f"{onnx_path}: TensorRT could not build an engine (see the warnings "
                        "above)")
    if options.timing_cache is not None:
        from deen.fileio import atomic_path

        with atomic_path(Path(options.timing_cache)) as tmp:
            tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    return bytes(serialized), plugins


def preflight(settings: ExportSettings) -> None:
    """What fails before a checkpoint is loaded: the options, then TensorRT and a GPU."""
    options = settings.options or TrtBuildOptions(precision=settings.precision)
    if not isinstance(options, TrtBuildOptions):
        raise ParameterError("options", type(options).__name__, "expected TrtBuildOptions")
    require_tensorrt()


def export(model: DEEN, out: Path, settings: ExportSettings) -> ExportResult:
    """The :class:`~deen.export.base.Exporter` of the ``trt`` format: ``settings.options``
    (:class:`TrtBuildOptions`) with ``settings.precision``."""
    options = replace(settings.options or TrtBuildOptions(), precision=settings.precision)
    return export_tensorrt(model, out, config=settings.config, source=settings.source,
                           input_size=settings.input_size, options=options,
                           onnx_path=settings.onnx_path, dee_op=settings.dee_op,
                           calib=settings.calib)


def export_tensorrt(model: DEEN, out: Path, *, config: EmbeddingConfig, source: SourceInfo,
                    input_size: tuple[int, int], options: TrtBuildOptions,
                    onnx_path: Path | None = None, dee_op: str = "standard",
                    calib: Path | None = None) -> ExportResult:
    """Build, verify against PyTorch fp32 and only then write ``out`` and its manifest.

    The ONNX graph is ``onnx_path`` when given (a deen export), else exported here: fp32
    (or, for int8, the QDQ graph of ``deen export --precision int8``)."""
    import json
    import tempfile

    from deen.backends.artifact import manifest_path_for
    from deen.backends.onnxrt_backend import OnnxRuntimeEmbedder
    from deen.backends.tensorrt_backend import TensorRTEmbedder
    from deen.backends.torch_backend import TorchEmbedder
    from deen.export.onnx_export import export_onnx
    from deen.export.verify import verify_embedder
    from deen.fileio import atomic_path

    out = Path(out)
    row = formats.get("trt")
    row.check_export(out, options.precision, dee_op)
    trt = require_tensorrt()  # first: without TensorRT nothing else is worth doing
    import torch

    with tempfile.TemporaryDirectory(prefix="deen-trt-") as scratch:
        if onnx_path is None:
            exported = export_onnx(
                model, Path(scratch) / "model.onnx", config=config, source=source,
                input_size=input_size, dee_op=dee_op, calib=calib,
                precision="int8" if options.precision == "int8" else "fp32")
            onnx_path, onnx_manifest = exported.model_path, exported.manifest
        else:  # a given file: opening it also checks that it is a deen export
            onnx_manifest = OnnxRuntimeEmbedder(onnx_path, device="cpu").manifest
        check_onnx_precision(options, onnx_manifest, Path(onnx_path))
        engine, plugins = build_engine(Path(onnx_path), out, options, input_size)
        device = torch.cuda.current_device()
        manifest = engine_manifest(onnx_manifest, options, trt.__version__,
                                   torch.cuda.get_device_name(device),
                                   torch.cuda.get_device_capability(device), plugins)
        with atomic_path(out) as tmp_engine, \
                atomic_path(manifest_path_for(out)) as tmp_manifest:
            tmp_engine.write_bytes(engine)
            tmp_manifest.write_text(json.dumps(manifest, indent=2) + "\n")
            # The embedder reads the manifest beside the engine: verify the pair in scratch.
            probe = Path(scratch) / out.name
            probe.write_bytes(engine)
            manifest_path_for(probe).write_text(tmp_manifest.read_text())
            report = verify_embedder(
                TorchEmbedder(model, config, device="cuda", input_size=input_size),
                TensorRTEmbedder(probe), row.tolerance(options.precision), subject=str(out))
            require_verified(report, out, "engine")
            manifest["verification"] = report.to_dict()
            manifest["sha256"] = hashlib.sha256(engine).hexdigest()
            tmp_manifest.write_text(json.dumps(manifest, indent=2) + "\n")
    return ExportResult(out, manifest_path_for(out), manifest, report)
