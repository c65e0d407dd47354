"""``deen export --engine openvino``: a verified OpenVINO IR (``FILE.xml`` + ``FILE.bin``).

The IR is read from the project's own verified ONNX export by OpenVINO's ONNX front end, so
it has the same inputs (``images``, ``modality``), output (``embedding``), dynamic batch and
embedding layout. Precisions:

- ``fp32``: the graph as it is, weights stored in fp32;
- ``bf16``: the same fp32 IR, with ``bf16`` recorded as its inference precision. OpenVINO
  computes float layers in bf16 on CPUs with bf16 instructions (AVX512_BF16, AMX) and in
  fp32 elsewhere; the manifest says so;
- ``int8``: NNCF post-training quantisation of the IR, calibrated on balanced visible and
  infrared crops (:mod:`deen.export.calibration`), with :data:`IGNORED_MODULES` (the identity
  path into the embedding) and :data:`IGNORED_TYPES` (residual additions, MFA's matrix
  products, the head) kept in float; those run in bf16 where the CPU has it.

The manifest (the ONNX export's, re-labelled, with an ``openvino`` block) is stored in the
IR's runtime info and beside it as ``FILE.xml.json`` with the verification results. The three
files appear under their final names only after the IR, run by OpenVINO, matched PyTorch
within the ``openvino-<precision>`` tolerance of :mod:`deen.export.compare`.

OpenVINO's own model converter and NNCF can report usage telemetry; this module uses the
runtime's ONNX reader (no telemetry) and switches NNCF's off before quantising.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deen import formats
from deen.backends.artifact import manifest_path_for
from deen.backends.openvino_backend import RT_INFO_KEY, OpenVinoEmbedder, weights_path_for
from deen.backends.torch_backend import TorchEmbedder
from deen.embedding import EmbeddingConfig
from deen.errors import DeenError, ParameterError
from deen.export.base import ExportResult, ExportSettings, require_verified
from deen.export.onnx_export import export_onnx
from deen.export.verify import verify_embedder
from deen.fileio import atomic_path, sha256_file
from deen.models.checkpoint import SourceInfo
from deen.models.deen import DEEN
from deen.preprocess import DEFAULT_INPUT_SIZE
from deen.variants import VARIANTS

#: MFA's output projections (``W``: 1x1 convolution + BN), kept in float for speed: quantised,
#: OpenVINO fuses their input's quantisation into the affinity product before them, which
#: then runs in fp32 instead of bf16. Every choice of this recipe is measured in
#: benchmarks/README.md, "OpenVINO int8 recipe".
MFA_PROJECTIONS = tuple(f"model.mfa{i}.{block}.out" for i in (1, 2, 3) for block in ("cnl", "pnl"))
#: Modules NNCF leaves in float, by variant and PyTorch module path (matched as in
#: :func:`deen.export.quantize.float_nodes`), chosen with ``benchmarks/openvino_int8_sweep.py``
#: and per-stage bisection:
#:
#: - the downsample convolution of the first block after DEE. That block's output, and so
#:   the pooled embedding, is the small positive remainder of its identity path (this
#:   convolution) plus its residual branch: rounding the identity path costs most accuracy
#:   for one 1x1 convolution;
#: - DEE: the largest gain in accuracy of any stage, for a little speed;
#: - :data:`MFA_PROJECTIONS`, for speed.
IGNORED_MODULES: dict[str, tuple[str, ...]] = {
    v.name: (f"model.layer{v.last_stage}.0.downsample", "model.dee", *MFA_PROJECTIONS)
    for v in VARIANTS.values()}
#: Operation types NNCF leaves in float (OpenVINO type names). ``Add``: the residual
#: additions read float values (NNCF otherwise rounds both inputs of every residual Add,
#: which alone ruins the embedding). ``MatMul``: MFA's affinity products (int8 ``MatMul`` is
#: no faster than fp32 there). The rest is the head after the last convolution (pooling,
#: BN-neck, L2 normalisation): cheap, and NNCF would otherwise round the pooled feature the
#: BN-neck then divides by a small standard deviation.
IGNORED_TYPES: tuple[str, ...] = ("Add", "MatMul", "ReduceMean", "BatchNormInference",
                                  "ReduceL2", "Divide")
CALIBRATION_BATCH = 1  # NNCF collects statistics per sample
#: Inference precision of the float layers, by export precision: the int8 IR's layers kept in
#: float run in bf16 where the CPU has it (as accurate as fp32 and faster).
FLOAT_LAYER_PRECISION = {"fp32": "fp32", "bf16": "bf16", "int8": "bf16"}
#: What a bf16 or int8 IR needs, recorded in its manifest.
PRECISION_NOTES = {
    "bf16": "bf16 runs as bf16 on CPUs with AVX512_BF16 or AMX and as fp32 elsewhere "
            "(the weights are stored in fp32)",
    "int8": "the layers kept in float run as bf16 on CPUs with AVX512_BF16 or AMX and as "
            "fp32 elsewhere"}


def nncf_without_telemetry() -> Any:
    """Import NNCF with its usage telemetry replaced by its own no-op stub, and its
    informational log (a line per node it leaves alone) off."""
    import logging

    import nncf
    from nncf.telemetry import decorator, wrapper

    nncf.set_log_level(logging.ERROR)
    stub = wrapper.NNCFTelemetryStub()
    wrapper.telemetry = stub
    decorator.telemetry = stub
    return nncf


def quantize_ir(model: Any, onnx_path: Path, batches: Sequence[dict[str, Any]],
                modules: Sequence[str], types: Sequence[str] = IGNORED_TYPES
                ) -> tuple[Any, list[str]]:
    """NNCF post-training int8 of an IR read from ``onnx_path``; returns the quantised model
    and the names of the nodes kept in float by module (OpenVINO keeps ONNX node names)."""
    import onnx

    from deen.export.quantize import float_nodes

    nncf = nncf_without_telemetry()
    kept = float_nodes(onnx.load(str(onnx_path), load_external_data=False), modules)
    present = {op.get_friendly_name() for op in model.get_ops()}
    # OpenVINO splits a Conv with a bias into ``NAME/WithoutBiases`` (the convolution) and
    # ``NAME`` (the Add): both names go in, or the convolution itself would be quantised.
    names = [name for node in kept for name in (node, f"{node}/WithoutBiases")
             if name in present]
    scope = nncf.IgnoredScope(names=names, types=list(types), validate=False)
    quantized = nncf.quantize(model, nncf.Dataset(list(batches)), subset_size=len(batches),
                              preset=nncf.QuantizationPreset.MIXED, ignored_scope=scope)
    return quantized, kept


def _fp32_onnx(model: DEEN, scratch: Path, config: EmbeddingConfig, source: SourceInfo,
               input_size: tuple[int, int], given: Path | None) -> tuple[Path, dict[str, Any]]:
    """The fp32 ONNX export the IR is read from, and its manifest: ``given`` (checked to be a
    deen fp32 export with standard operators and the same embedding settings), or a new one
    in ``scratch``."""
    if given is None:
        exported = export_onnx(model, scratch / "model.onnx", config=config, source=source,
                               input_size=input_size)
        return exported.model_path, exported.manifest
    from deen.backends.onnxrt_backend import OnnxRuntimeEmbedder

    embedder = OnnxRuntimeEmbedder(given, device="cpu")
    if embedder.manifest.get("precision") != "fp32" or \
            embedder.manifest.get("dee_op") != "standard":
        raise ParameterError("onnx_path", given, "OpenVINO IRs are made from an fp32 ONNX "
                             "export with standard operators")
    if embedder.config != config or tuple(embedder.input_size) != tuple(input_size):
        height, width = embedder.input_size
        raise ParameterError("onnx_path", given, f"exported with {embedder.config.describe()} "
                             f"at {height}x{width}, not {config.describe()} at "
                             f"{input_size[0]}x{input_size[1]}")
    return Path(given), embedder.manifest


def export_openvino(model: DEEN, out: str | os.PathLike[str], *, config: EmbeddingConfig,
                    source: SourceInfo, input_size: tuple[int, int] = DEFAULT_INPUT_SIZE,
                    precision: str = "fp32", calib: Path | None = None,
                    ignored_modules: Sequence[str] | None = None,
                    ignored_types: Sequence[str] = IGNORED_TYPES,
                    onnx_path: Path | None = None,
                    calibration_images: int = 64) -> ExportResult:
    """Export, verify against PyTorch fp32, then move ``out`` (``.xml``), its ``.bin`` and
    its manifest into place. Raises :class:`DeenError` and leaves nothing behind on any
    failure (bad suffix, bad ``calib`` folder, failed verification).

    ``onnx_path`` reuses an fp32 ONNX export of the same model (``deen export --engine
    onnx``) instead of exporting one here; the IR is still verified against ``model``.
    ``calibration_images`` (int8): how many crops NNCF calibrates on, half per modality.
    ``ignored_modules`` (int8): module paths kept in float (default: :data:`IGNORED_MODULES`
    for the model's variant)."""
    import openvino as ov

    out = Path(out)
    row = formats.get("openvino")
    row.check_export(out, precision)
    crops = None
    if precision == "int8":
        from deen.export.calibration import calibration_batches, calibration_crops

        # First: a bad --calib fails before any work.
        crops = calibration_crops(calib, count=calibration_images)
    model = model.cpu().eval()
    if ignored_modules is None:
        ignored_modules = IGNORED_MODULES[model.variant.name]
    with tempfile.TemporaryDirectory(prefix="deen-openvino-") as scratch:
        onnx_path, onnx_manifest = _fp32_onnx(model, Path(scratch), config, source,
                                              input_size, onnx_path)
        core = ov.Core()
        graph = core.read_model(str(onnx_path))
        manifest = {k: v for k, v in onnx_manifest.items()
                    if k not in ("file", "sha256", "verification")}
        manifest.update({
            "engine": "openvino", "precision": precision,
            "onnx_source": {"sha256": sha256_file(onnx_path)},
            "openvino": {"version": ov.get_version(),
                         "inference_precision": FLOAT_LAYER_PRECISION[precision],
                         "weights": "fp32",
                         **({"note": PRECISION_NOTES[precision]}
                            if precision in PRECISION_NOTES else {})}})
        if crops is not None:
            batches = calibration_batches(crops, input_size, CALIBRATION_BATCH)
            nncf = nncf_without_telemetry()
            graph, kept = quantize_ir(graph, onnx_path, batches, ignored_modules,
                                      ignored_types)
            manifest["quantization"] = {
                "tool": f"nncf.quantize {nncf.__version__}", "preset": "mixed",
                "weights": "int8 symmetric per channel",
                "activations": "int8 per tensor, asymmetric where they may be negative",
                "calibration": str(calib) if calib else "generated people",
                "calibration_images": len(crops), "float_modules": list(ignored_modules),
                "float_op_types": list(ignored_types), "float_nodes": len(kept)}
        staged = Path(scratch) / "model.xml"
        ov.save_model(graph, str(staged), compress_to_fp16=False)
        # The .xml records its .bin's hash, so that a reader can tell a mismatched pair.
        manifest["weights_file"] = weights_path_for(out).name
        manifest["weights_sha256"] = sha256_file(weights_path_for(staged))
        graph.set_rt_info(json.dumps(manifest), RT_INFO_KEY)
        ov.save_model(graph, str(staged), compress_to_fp16=False)
        if sha256_file(weights_path_for(staged)) != manifest["weights_sha256"]:
            raise DeenError(f"{out}: OpenVINO wrote different weights twice; no file written")
        report = verify_embedder(
            TorchEmbedder(model, config, device="cpu", input_size=input_size),
            OpenVinoEmbedder(staged, device="CPU"), row.tolerance(precision),
            subject=str(out))
        require_verified(report, out)
        manifest.update({"file": out.name, "sha256": sha256_file(staged),
                         "verification": report.to_dict()})
        manifest_file = manifest_path_for(out)
        # Exits rename in reverse order: manifest, then .bin, then .xml last, so a reader
        # that finds the .xml finds its weights.
        with atomic_path(out) as tmp_xml, atomic_path(weights_path_for(out)) as tmp_bin, \
                atomic_path(manifest_file) as tmp_manifest:
            shutil.copyfile(staged, tmp_xml)
            shutil.copyfile(weights_path_for(staged), tmp_bin)
            tmp_manifest.write_text(json.dumps(manifest, indent=2) + "\n")
    return ExportResult(out, manifest_file, manifest, report,
                        companions=(weights_path_for(out),))


def export(model: DEEN, out: Path, settings: ExportSettings) -> ExportResult:
    """The :class:`~deen.export.base.Exporter` of the ``openvino`` format."""
    return export_openvino(model, out, config=settings.config, source=settings.source,
                           input_size=settings.input_size, precision=settings.precision,
                           calib=settings.calib, onnx_path=settings.onnx_path)
