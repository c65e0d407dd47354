"""``deen export --engine onnx``: DEEN → one verified ONNX graph with a manifest.

The graph is :class:`~deen.models.embedding_network.EmbeddingNetwork` traced by
``torch.onnx.export`` (dynamo): inputs ``images`` (N×3×384×144 float32) and ``modality``
(N int64), output ``embedding`` (N×6D), dynamic N. By default only standard ONNX operators
(DEE's dilated convolutions are plain ``Conv`` nodes); ``dee_op="custom"`` writes both DEE branches'
dilated convolutions as one ``deen.ops::DeeConv`` node (:mod:`deen.ops.onnx_custom`), which
ONNX Runtime runs through the project's custom-op library. Both stems run on every row and a
``Where`` picks per row, so one batch may mix modalities. After tracing, ONNX Runtime runs
the file against PyTorch on generated images of both modalities; the file and its manifest
appear under their final names only if that comparison is within tolerance.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from deen import formats
from deen.backends.artifact import (
    INPUT_IMAGES,
    INPUT_MODALITY,
    METADATA_KEY,
    OUTPUT_EMBEDDING,
    build_manifest,
    manifest_path_for,
)
from deen.backends.onnxrt_backend import OnnxRuntimeEmbedder
from deen.backends.torch_backend import TorchEmbedder
from deen.embedding import EmbeddingConfig
from deen.errors import BadValueError, DeenError, first_line
from deen.export.base import (
    DEFAULT_OPSET,
    ExportResult,
    ExportSettings,
    check_opset,
    require_verified,
)
from deen.export.trace_cache import TraceCache, trace_key
from deen.export.verify import verify_embedder
from deen.fileio import atomic_path, sha256_file
from deen.models.checkpoint import SourceInfo
from deen.models.deen import DEEN
from deen.models.embedding_network import EmbeddingNetwork
from deen.preprocess import DEFAULT_INPUT_SIZE, check_input_size

__all__ = ["DEFAULT_OPSET", "ExportResult", "export", "export_onnx", "trace_to_onnx"]


@contextlib.contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


_TRACES = TraceCache()


def trace_to_onnx(network: EmbeddingNetwork, path: Path, opset: int,
                  metadata: dict[str, str], input_size: tuple[int, int],
                  dee_op: str = "standard") -> None:
    """Write ``network`` as a single-file ONNX graph with a dynamic batch axis; with
    ``dee_op="custom"`` DEE is traced on its fused path and becomes one DeeConv node. A
    graph kept from an earlier trace of the same weights and settings is reused, with
    ``metadata`` in place of what it was written with (:mod:`deen.export.trace_cache`)."""
    import onnx

    key = traced_graph_key(network, opset, input_size, dee_op) if _TRACES.folder else None
    kept = _TRACES.get(key) if key else None
    if kept is not None:
        try:
            model = onnx.load_from_string(kept)
        except Exception:  # a damaged kept graph is traced again
            pass
        else:
            del model.metadata_props[:]
            for name, value in metadata.items():
                model.metadata_props.add(key=name, value=value)
            onnx.save(model, str(path))
            return
    program = _trace(network, opset, input_size, dee_op)
    program.model.metadata_props.clear()
    program.model.metadata_props.update(metadata)
    program.save(str(path), external_data=False)
    if key:
        _TRACES.put(key, path.read_bytes())


def traced_graph_key(network: EmbeddingNetwork, opset: int, input_size: tuple[int, int],
                     dee_op: str = "standard") -> str:
    """The key under which ``trace_to_onnx`` keeps the graph of these weights and settings."""
    return trace_key(network, {"opset": opset, "input_size": tuple(input_size),
                               "dee_op": dee_op, "config": network.config.to_dict()})


def _trace(network: EmbeddingNetwork, opset: int, input_size: tuple[int, int],
           dee_op: str) -> torch.onnx.ONNXProgram:
    table = None
    if dee_op == "custom":
        from deen.ops.onnx_custom import translation_table

        table = translation_table()
    batch = torch.export.Dim("batch", min=1)
    example = (torch.randn(2, 3, *input_size), torch.tensor([0, 1]))
    # The exporter narrates its steps on stdout and logs warnings about its internals (e.g.
    # torchvision ops it cannot register); neither is ours to show. Real failures still raise.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            _quiet_logger("torch.onnx"):
        warnings.simplefilter("ignore")
        try:
            return torch.onnx.export(
                network, example, None, dynamo=True, opset_version=opset,
                input_names=[INPUT_IMAGES, INPUT_MODALITY], output_names=[OUTPUT_EMBEDDING],
                dynamic_shapes={"images": {0: batch}, "modality": {0: batch}},
                external_data=False, verbose=False, custom_translation_table=table,
            )
        except Exception as exc:
            raise DeenError(f"ONNX export failed: {first_line(exc)}") from exc


def _set_metadata(path: Path, manifest: dict[str, Any]) -> None:
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    model.metadata_props.add(key=METADATA_KEY, value=json.dumps(manifest))
    onnx.save(model, str(path))


def export_onnx(model: DEEN, out: str | os.PathLike[str], *, config: EmbeddingConfig,
                source: SourceInfo, opset: int = DEFAULT_OPSET,
                input_size: tuple[int, int] = DEFAULT_INPUT_SIZE, precision: str = "fp32",
                calib: Path | None = None, dee_op: str = "standard",
                float_patterns: Sequence[str] | None = None) -> ExportResult:
    """Export, verify against PyTorch, then move the ONNX file and its manifest into place.

    ``precision="int8"`` quantises the fp32 graph (:mod:`deen.export.quantize`) with
    calibration crops from ``calib`` (``visible/`` and ``infrared/`` folders; default:
    generated people) and verifies it against PyTorch fp32 with the ``onnx-int8`` tolerance;
    ``float_patterns`` overrides which modules stay float (default
    :data:`~deen.export.quantize.FLOAT_PATTERNS`; ``benchmarks/int8_sweep.py`` compares
    choices). ``dee_op="custom"`` emits DEE as the custom ``DeeConv`` node (fp32 only).
    Raises :class:`DeenError` (and leaves nothing at ``out``) when verification fails.
    """
    out = Path(out)
    row = formats.get("onnx")
    row.check_export(out, precision, dee_op)
    check_opset(opset)
    input_size = check_input_size(input_size)
    if dee_op == "custom" and precision != "fp32":
        raise BadValueError("dee_op", dee_op,
                             "is fp32 only (the DeeConv kernel takes float32)")
    model = model.cpu().eval()
    if dee_op == "custom":
        model = copy.deepcopy(model)  # the caller's model keeps its own DEE path
        model.set_dee_impl("fused")
    network = EmbeddingNetwork(model, config)
    manifest = build_manifest(
        engine="onnx", variant=model.variant.name, num_classes=model.num_classes,
        embedding_dim=model.variant.embedding_dim, config=config, source=source, opset=opset,
        input_size=input_size, precision=precision, dee_op=dee_op,
    )
    manifest_file = manifest_path_for(out)
    tolerance = row.tolerance(precision)
    with atomic_path(out) as tmp_model, atomic_path(manifest_file) as tmp_manifest:
        if precision == "int8":
            from deen.export.calibration import calibration_crops
            from deen.export.quantize import FLOAT_PATTERNS, quantize_int8

            crops = calibration_crops(calib)  # first: a bad --calib fails before tracing
            fp32 = tmp_model.with_name(f"{tmp_model.name}.fp32.onnx")  # only int8 is kept
            patterns = list(FLOAT_PATTERNS if float_patterns is None else float_patterns)
            try:
                trace_to_onnx(network, fp32, opset, {METADATA_KEY: json.dumps(manifest)},
                              input_size)
                kept = quantize_int8(fp32, tmp_model, crops, input_size, patterns)
            finally:
                fp32.unlink(missing_ok=True)
            manifest["quantization"] = {
                "tool": "onnxruntime.quantization.quantize_static", "format": "QDQ",
                "weights": "int8 per channel",
                "activations": "uint8 per tensor (MinMax), read only by int8 convolutions",
                "calibration": str(calib) if calib else "generated people",
                "calibration_images": len(crops), "float_modules": patterns,
                "float_nodes": len(kept)}
            _set_metadata(tmp_model, manifest)
        else:
            trace_to_onnx(network, tmp_model, opset, {METADATA_KEY: json.dumps(manifest)},
                          input_size, dee_op)
        report = verify_embedder(TorchEmbedder(model, config, device="cpu",
                                               input_size=input_size),
                                 OnnxRuntimeEmbedder(tmp_model, device="cpu"), tolerance,
                                 subject=str(out))
        require_verified(report, out)
        manifest = {**manifest, "file": out.name, "sha256": sha256_file(tmp_model),
                    "verification": report.to_dict()}
        tmp_manifest.write_text(json.dumps(manifest, indent=2) + "\n")
    return ExportResult(out, manifest_file, manifest, report)


def export(model: DEEN, out: Path, settings: ExportSettings) -> ExportResult:
    """The :class:`~deen.export.base.Exporter` of the ``onnx`` format."""
    return export_onnx(model, out, config=settings.config, source=settings.source,
                       opset=settings.opset, input_size=settings.input_size,
                       precision=settings.precision, calib=settings.calib,
                       dee_op=settings.dee_op)
