"""``deen demo``: the whole core path on generated people, with nothing to download.

Model (a checkpoint, or a seeded random DEEN) → verified ONNX export and OpenVINO int8 IR →
embeddings of generated visible and infrared people with PyTorch, ONNX Runtime and OpenVINO →
cross-modality similarity matrix and a latency comparison → the live pipeline on a generated
camera pair with the fastest of them. With an output folder the demo keeps the checkpoint it
used beside the exports (:data:`KEPT`), so that ``deen export --checkpoint`` can make other
exports of the same model, which share a gallery with the demo's.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from deen.backends.base import Embedder, modality_codes
from deen.backends.onnxrt_backend import OnnxRuntimeEmbedder
from deen.backends.torch_backend import TorchEmbedder
from deen.embedding import EmbeddingConfig, cosine_similarity
from deen.errors import DeenError
from deen.export.compare import row_cosines
from deen.export.onnx_export import export_onnx
from deen.fileio import sha256_file
from deen.models.checkpoint import SourceInfo, load_checkpoint, random_model, save_checkpoint
from deen.models.deen import DEEN
from deen.preprocess import DEFAULT_INPUT_SIZE, preprocess
from deen.runtime.events import EventLog
from deen.runtime.live import run_live
from deen.runtime.settings import LiveSettings
from deen.scenes import write_stream_pair
from deen.synthetic import make_people, render_pairs
from deen.train.generated_model import MINUTES, cached_model, generated_model
from deen.variants import DEFAULT_VARIANT

#: What an output folder keeps: the checkpoint (as ``deen`` + its own suffix), the ONNX
#: export and the OpenVINO int8 IR, each with its manifest.
KEPT = ("deen.pt", "deen.pth", "deen.t", "deen.onnx", "deen.onnx.json", "deen_int8.xml",
        "deen_int8.bin", "deen_int8.xml.json")

RANDOM_INIT_WARNING = (
    "No --checkpoint given: using a RANDOMLY INITIALISED DEEN (seed {seed}).",
    "Its embeddings are untrained: the numbers below show that the pipeline runs and",
    "that ONNX Runtime matches PyTorch, not that anyone is re-identified.",
    "Pass --checkpoint FILE (the authors' .t or a deen checkpoint) for real weights,",
    "or --train to train one on generated people first (about {minutes} CPU-minutes,",
    "cached for later runs).",
)


def _boxed(lines: list[str]) -> str:
    width = max(len(line) for line in lines)
    rule = "*" * (width + 4)
    return "\n".join([rule, *(f"* {line:<{width}} *" for line in lines), rule])


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: first calls allocate and pick kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _print_matrix(similarity: np.ndarray, log: Callable[[str], None]) -> None:
    n = similarity.shape[0]
    log("        " + "".join(f"{'ir' + str(j):>9}" for j in range(n)))
    for i in range(n):
        row = "".join(f"{s:9.3f}" if i != j else f"{s:8.3f}*" for j, s in enumerate(similarity[i]))
        log(f"  vis{i:<3d}{row}")


def run_demo(checkpoint: Path | None, variant: str | None, people: int, seed: int,
             config: EmbeddingConfig, out_dir: Path | None, repeats: int = 3,
             train: bool = False, log: Callable[[str], None] = lambda line: None) -> int:
    """Without ``checkpoint``: the cached model trained on generated people when there is
    one (trained first when ``train``), else a seeded random DEEN; the demo says which.
    What it shows goes to ``log``, a line at a time."""
    loaded = None
    if checkpoint is None:
        checkpoint = generated_model() if train else cached_model()
        if checkpoint is not None:
            loaded = load_checkpoint(checkpoint)
            if variant is not None and loaded.model.variant.name != variant:
                log(f"The DEEN trained here on generated people ({checkpoint}) is a "
                      f"{loaded.model.variant.name} model, not {variant}: not using it.")
                checkpoint = loaded = None
        if checkpoint is not None:
            log(f"No --checkpoint given: using the DEEN trained here on generated people "
                  f"({checkpoint}). The people below are new to it, so its matches show "
                  "re-identification, on generated people only.")
    if checkpoint is None:
        log(_boxed([line.format(seed=seed, minutes=MINUTES)
                      for line in RANDOM_INIT_WARNING]))
        model, source = random_model(variant or DEFAULT_VARIANT, seed)
        input_size = DEFAULT_INPUT_SIZE
    else:
        loaded = loaded or load_checkpoint(checkpoint, variant=variant)
        model, source, input_size = loaded.model, loaded.source, loaded.input_size
        log(f"checkpoint: {checkpoint} ({loaded.source_format} format, "
              f"{len(loaded.ignored)} unused tensors ignored)")
    log(f"model: DEEN {model.variant.name}, {model.variant.embedding_dim}-d features, "
          f"{6 * model.variant.embedding_dim}-d embedding, flip {'on' if config.flip else 'off'}")
    kept = None
    if out_dir is not None:
        kept, source = _keep_checkpoint(checkpoint, model, source, input_size, out_dir)

    with tempfile.TemporaryDirectory(prefix="deen-demo-") as scratch:
        onnx_path = (out_dir or Path(scratch)) / "deen.onnx"
        log(f"exporting to {onnx_path} and verifying with ONNX Runtime ...")
        start = time.perf_counter()
        result = export_onnx(model, onnx_path, config=config, source=source,
                             input_size=input_size)
        log(f"  done in {time.perf_counter() - start:.1f} s: {result.verification.summary()}")

        backends: list[Embedder] = [TorchEmbedder(model, config, "cpu", input_size),
                                    OnnxRuntimeEmbedder(onnx_path, device="cpu")]
        openvino = _openvino_int8(model, config, source, input_size, result.model_path,
                                  onnx_path.with_name("deen_int8.xml"), log)
        if openvino is not None:
            backends.append(openvino)
        visible, infrared = render_pairs(make_people(people, seed), seed)
        images = visible + infrared
        codes = modality_codes(["visible"] * people + ["infrared"] * people, 2 * people)
        batch = preprocess(images, size=input_size)
        embeddings = {e.backend: e.run(batch, codes) for e in backends}

        torch_emb, ort_emb = embeddings["pytorch"], embeddings["onnxruntime"]
        similarity = cosine_similarity(ort_emb[:people], ort_emb[people:])
        log("\ncross-modality similarity (cosine of embeddings, -1..1, as deen run and the "
              "gallery report it), onnxruntime; rows: visible, columns: infrared, "
              "* = same person")
        _print_matrix(similarity, log)
        hits = int((similarity.argmax(axis=1) == np.arange(people)).sum())
        log(f"rank-1 visible→infrared: {hits}/{people} (chance level: 1/{people})")
        for name, emb in embeddings.items():
            if name != "pytorch":
                log(f"pytorch vs {name} on these {2 * people} images: max abs diff "
                      f"{np.abs(torch_emb - emb).max():.3g}, min cosine "
                      f"{row_cosines(torch_emb, emb).min():.7f}")

        latency = {e.backend: _median_seconds(lambda e=e: e.run(batch, codes), repeats)
                   for e in backends}
        reference = latency["pytorch"]
        log(f"latency, batch {len(images)}, flip {'on' if config.flip else 'off'}, CPU, median "
              f"of {repeats}: " + ", ".join(
                  f"{name} {seconds * 1e3:.0f} ms ({reference / seconds:.2f}× pytorch)"
                  for name, seconds in latency.items()))
        fastest = min(backends[1:], key=lambda e: latency[e.backend])
        model_path = getattr(fastest, "path", result.model_path)
        _live_demo(fastest, model_path, Path(scratch), seed, log)
        if kept is not None:
            log(f"kept: the checkpoint {kept} (deen export --checkpoint {kept} makes other "
                  "exports of it, e.g. an fp32 OpenVINO IR or a --no-flip ONNX), "
                  f"{result.model_path} and {result.manifest_path.name}"
                  + (f", {openvino.path.name} (.bin, .json)" if openvino is not None else ""))
    return 0


def _keep_checkpoint(checkpoint: Path | None, model: DEEN, source: SourceInfo,
                     input_size: tuple[int, int], out_dir: Path) -> tuple[Path, SourceInfo]:
    """Keep the demo's model in ``out_dir`` as a checkpoint: a copy of the file used, or the
    random model saved; returns it and the source the exports record (the kept file, so
    that its later exports share the demo's gallery identity)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if checkpoint is not None:
        kept = out_dir / f"deen{checkpoint.suffix}"
        shutil.copyfile(checkpoint, kept)
        return kept, source
    kept = out_dir / "deen.pt"
    save_checkpoint(model, kept, {"input_size": list(input_size)})
    return kept, SourceInfo("deen", str(kept), sha256_file(kept))


def _openvino_int8(model: DEEN, config: EmbeddingConfig, source: SourceInfo,
                   input_size: tuple[int, int], onnx_path: Path, out: Path,
                   log: Callable[[str], None]) -> Embedder | None:
    """The fastest CPU path this toolchain builds: an OpenVINO int8 IR (NNCF, calibrated on a
    few generated people of both modalities), or None, with the reason, where it cannot."""
    log("quantising for OpenVINO (int8, NNCF, 16 generated calibration images) and "
          "verifying ...")
    start = time.perf_counter()
    try:
        from deen.backends.openvino_backend import OpenVinoEmbedder
        from deen.export.openvino_export import export_openvino

        result = export_openvino(model, out, config=config, source=source,
                                 input_size=input_size, precision="int8", onnx_path=onnx_path,
                                 calibration_images=16)
    except (DeenError, ImportError) as exc:
        log(f"  skipped: {exc}")
        return None
    log(f"  done in {time.perf_counter() - start:.1f} s: {result.verification.summary()}")
    return OpenVinoEmbedder(result.model_path)


def _describe(event: dict) -> str:
    kind = event["event"]
    if kind in ("match", "unmatch"):
        what = f"visible track {event['visible_track']} ↔ infrared track {event['infrared_track']}"
        what += (f", similarity {event['similarity']:.3f}" if kind == "match"
                 else f" ({event['reason']})")
    elif kind == "stream":
        what = f"{event['stream']} stream {event['state']}"
    else:
        what = f"{event['stream']} track {event['track']}"
    latency = f"  [{event['latency_ms']:.0f} ms after capture]" if "latency_ms" in event else ""
    return f"  {kind:<14} {what}{latency}"


def _live_demo(embedder: Embedder, model_path: Path, scratch: Path, seed: int,
               log: Callable[[str], None]) -> None:
    """`deen run` on a generated visible/infrared camera pair, in real time."""
    pair = write_stream_pair(scratch / "streams", people=3, seconds=6, fps=10, seed=seed)
    log(f"\nlive pipeline (deen run) on a generated camera pair, 6 s at 10 fps, detections "
          f"from the generator's boxes ({pair.boxes.name}), embedder: {embedder.backend} ...")
    settings = LiveSettings().updated({
        "sources.rgb": str(pair.visible), "sources.ir": str(pair.infrared),
        "detection.detector": str(pair.boxes), "outputs.events": (),
        "outputs.status_every_s": 0.0})
    events = EventLog(None, keep=10_000)
    summary = run_live(embedder, model_path, settings, events=events)
    for event in events.recent:
        log(_describe(event))
    for line in summary.lines():
        log(f"  {line}")
