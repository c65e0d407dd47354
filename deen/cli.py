"""The ``deen`` command and its aliases (``deen-export`` = ``deen export``, …).

Errors the user can fix (a bad file, a bad argument, a failed verification) print one line,
``deen <command>: error: <what is wrong>``, and exit 1; ``--debug`` shows the traceback
instead. Argument errors exit 2, as argparse does.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from deen import __version__, formats
from deen.datasets import registry as datasets
from deen.embedding import EmbeddingConfig
from deen.errors import DeenError, ParameterError
from deen.modality import parse_modality
from deen.train.generated_model import MINUTES as GENERATED_MODEL_MINUTES
from deen.variants import VARIANTS


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_embedding_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-flip", dest="flip", action="store_false",
                        help="embed the image only, without averaging over its horizontal flip "
                             "(half the compute; the reference protocol flips)")
    parser.add_argument("--a", type=float, default=None, metavar="A",
                        help="weight the pool parts by sqrt(A) and the BN-neck parts by "
                             "sqrt(1-A) (the paper's S_a uses A=0.1); default: equal weights")


def _add_model_options(parser: argparse.ArgumentParser, checkpoint_required: bool) -> None:
    parser.add_argument("--checkpoint", type=Path, required=checkpoint_required, metavar="CKPT",
                        help="a checkpoint saved by the authors' code ({'net': ...}) or by deen")
    parser.add_argument("--variant", choices=sorted(VARIANTS), default=None,
                        help="network variant; detected from the checkpoint (sysu and llcm are "
                             "the same network, regdb differs)")


def _model_arg(text: str) -> Path | str:
    """A model file, or a served model's triton://HOST:PORT/NAME kept as written."""
    return text if text.lower().startswith("triton://") else Path(text)


def _embedding_config(args: argparse.Namespace) -> EmbeddingConfig:
    return EmbeddingConfig(flip=args.flip, a=args.a)


def _model_embedding_config(args: argparse.Namespace) -> EmbeddingConfig | None:
    """An exported model (.onnx, .xml, .engine) has its embedding settings baked in: use them
    unless the user asked for others (which open_embedder then checks); a checkpoint takes
    the options as given."""
    config = _embedding_config(args)
    if not formats.is_checkpoint(args.model) and config == EmbeddingConfig():
        return None
    return config


def _engine_options(row: formats.Format, args: argparse.Namespace) -> Any:
    """The engine's options dataclass (its row's ``options_type``) from the flags of the same
    names; ``None`` for an engine without one."""
    if row.options_type is None:
        return None
    return _dataclass_from_args(formats.load(row.options_type), args)


def _dataclass_from_args(cls: type, args: argparse.Namespace) -> Any:
    """``cls`` with each field that a flag of its name sets; a field that is itself an
    options dataclass (its default factory) is filled the same way."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        factory = f.default_factory
        if isinstance(factory, type) and dataclasses.is_dataclass(factory):
            values[f.name] = _dataclass_from_args(factory, args)
        elif hasattr(args, f.name):
            value = getattr(args, f.name)
            values[f.name] = tuple(value) if isinstance(value, list) else value
    return cls(**values)


def _cmd_export(args: argparse.Namespace) -> int:
    from deen.export.base import ExportSettings

    row = formats.get(args.engine)
    if args.precision not in row.precisions:
        takers = [f.name for f in formats.formats() if f.exportable
                  and args.precision in f.precisions]
        raise DeenError(f"--precision {args.precision} is for --engine {', '.join(takers)}; "
                        f"--engine {row.name} takes {', '.join(row.precisions)}")
    row.check_export(args.out, args.precision, args.dee_op)
    # Everything that can fail without the checkpoint fails before it is loaded.
    settings = ExportSettings(_embedding_config(args), source=None,  # type: ignore[arg-type]
                              precision=args.precision, calib=args.calib, opset=args.opset,
                              dee_op=args.dee_op, onnx_path=args.onnx,
                              options=_engine_options(row, args))
    if row.preflight is not None:
        formats.load(row.preflight)(settings)
    from deen.models.checkpoint import load_checkpoint

    loaded = load_checkpoint(args.checkpoint, variant=args.variant)
    print(f"loaded {args.checkpoint} ({loaded.source_format} format, DEEN "
          f"{loaded.model.variant.name}); exporting {row.name} {args.precision} and "
          "verifying ...", flush=True)
    settings = dataclasses.replace(settings, source=loaded.source,
                                   input_size=tuple(loaded.input_size))
    assert row.exporter is not None
    result = formats.load(row.exporter)(loaded.model, args.out, settings)
    written = [result.model_path]
    if result.model_path.is_dir():
        written = sorted(p for p in result.model_path.rglob("*") if p.is_file())
        print(f"wrote a {row.name} model repository to {result.model_path} ({len(written)} "
              "files)")
    else:
        names = [str(result.model_path), *(p.name for p in result.companions)]
        if result.manifest_path is not None:
            names.append(result.manifest_path.name)
        print(f"wrote {', '.join(names)}")
    print(f"verified: {result.summary()}")
    note = result.manifest.get(row.runtime, {}).get("note")
    if note:
        print(f"note: {note}")
    if result.usage:
        print(result.usage)
    return 0


def _cmd_build_ops(args: argparse.Namespace) -> int:
    from deen.ops import native

    print(f"built {native.build(force=args.force)}")
    if args.cuda:
        print(f"built {native.build(cuda=True, force=args.force)}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from deen.demo import run_demo

    return run_demo(args.checkpoint, args.variant, args.people, args.seed,
                    _embedding_config(args), args.out_dir, repeats=args.repeats,
                    train=args.train)


def _cmd_train(args: argparse.Namespace) -> int:
    from deen.train.config import load_config
    from deen.train.trainer import Trainer, read_resume_state

    overrides = list(args.set)
    overrides += [f"{k}={v}" for k, v in (("root", args.root), ("dataset", args.dataset),
                                          ("out", args.out)) if v is not None]
    resume = read_resume_state(args.resume) if args.resume is not None else None
    # A resumed run keeps its saved settings unless a config file replaces them.
    base = resume["training"]["config"] if resume is not None and args.config is None else None
    config = load_config(args.config, overrides, base=base)
    trainer = Trainer(config, resume=resume, force=args.force)
    last = trainer.train()
    stopped = trainer.epoch < config.epochs
    if trainer.rank == 0:
        print(f"{'stopped' if stopped else 'finished'}: {last}")
    return 130 if stopped and config.stop_after_steps == 0 else 0


def _cmd_eval(args: argparse.Namespace) -> int:
    import json

    from deen.backends import open_embedder
    from deen.eval.evaluate import evaluate_dataset, write_report

    embedder = open_embedder(args.model, variant=args.variant, device=args.device)
    report = evaluate_dataset(embedder, args.dataset, args.root, str(args.model),
                              trials=args.trials, rerank=args.rerank, show_progress=True,
                              ranks=args.ranks, top=args.top)
    print(f"{args.dataset} protocol, {args.model} ({embedder.backend}), CMC/mAP/mINP in %"
          f"{', re-ranked' if args.rerank else ''}:")
    print(report.table())
    if args.json is not None:
        write_report(report, args.json)
        print(f"wrote {args.json}")
    elif args.print_json:
        print(json.dumps(report.to_dict(), indent=2))
    if args.ranks is not None:
        print(f"wrote ranked results to {args.ranks}/<setting>/index.html (sheets, ranks.csv)")
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from deen.datasets.synth import write_synthetic_dataset

    height, _, width = args.size.partition("x")
    if not (height.isdigit() and width.isdigit()):
        raise DeenError(f"--size {args.size}: expected HEIGHTxWIDTH, e.g. 128x64")
    out = write_synthetic_dataset(args.out, args.layout, args.identities, args.per_camera,
                                  (int(height), int(width)), args.seed)
    print(f"wrote a synthetic {args.layout} dataset to {out}")
    return 0


def _cmd_scene(args: argparse.Namespace) -> int:
    from deen.fileio import require_new_folder
    from deen.runtime.scene import SceneSettings, write_scene

    settings = _dataclass_from_args(SceneSettings, args)
    require_new_folder(args.out)  # before the progress line, so the error is the only line
    print(f"writing a {settings.seconds:g} s scene of {settings.people} people "
          f"({settings.frames} frames per stream) ...", flush=True)
    scene = write_scene(args.out, settings)
    print(f"wrote {scene.root}: {scene.visible.name}, {scene.infrared.name}, rgb/ and ir/ "
          "(MOTChallenge truth), identities.csv, boxes.jsonl")
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from deen.eval.live_score import score_run, write_score

    score = score_run(args.truth, args.run)
    print(score.markdown(), end="")
    out_dir = args.out_dir or args.run
    for path in write_score(score, out_dir):
        if path.suffix != ".png":
            print(f"wrote {path}")
    print(f"wrote {len(score.timelines)} timelines to {Path(out_dir) / 'timelines'}")
    if args.json is not None:
        from deen.fileio import atomic_path

        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(score.to_dict(), indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def _live_options(args: argparse.Namespace):
    from deen.runtime.pipeline import PipelineOptions

    return PipelineOptions(embed_budget=args.embed_budget, embed_batch=args.embed_batch,
                           match_threshold=args.match_threshold,
                           confirm_rounds=args.confirm_rounds, break_rounds=args.break_rounds,
                           gallery_threshold=args.gallery_threshold,
                           fail_after_s=args.fail_after, match_margin=args.match_margin,
                           match_hold=args.match_hold, relink=not args.no_relink,
                           relink_lead=None if args.relink_lead == "none"
                           else parse_modality(args.relink_lead),
                           clean_crops=args.clean_crops, view_map=not args.no_view_map,
                           level_light=not args.no_level_light,
                           match_gate=args.match_gate, placed_threshold=args.placed_threshold)


#: Where a URL's password belongs instead of the command line, by scheme.
_PASSWORD_HOMES = {**dict.fromkeys(("postgresql", "postgres"), "$PGPASSWORD or ~/.pgpass"),
                   **dict.fromkeys(("mqtt", "mqtts"), "$DEEN_MQTT_PASSWORD")}


def _warn_command_line_passwords(command: str, options: dict[str, list[str]]) -> None:
    """One line on stderr for each URL given with a password (``options``: flag → values):
    other users see it in process lists, and shells keep it in their history. The URL is
    still used."""
    from deen.errors import redact_url, url_has_password

    for flag, values in options.items():
        for value in dict.fromkeys(v for v in values if v):
            scheme = value.split("://", 1)[0].lower()
            if scheme in _PASSWORD_HOMES and url_has_password(value):
                print(f"{command}: warning: {flag} {redact_url(value)}: a password on the "
                      "command line shows in process lists and shell history; give it in "
                      f"{_PASSWORD_HOMES[scheme]} instead", file=sys.stderr, flush=True)


def _cmd_run(args: argparse.Namespace) -> int:
    from deen.backends import open_embedder
    from deen.runtime.live import LiveSettings, open_events, run_live
    from deen.runtime.sources import quiet_video_backends
    from deen.runtime.web import ServeAddress
    from deen.runtime.web_access import web_access

    if not args.debug:
        quiet_video_backends()
    _warn_command_line_passwords("deen run", {"--gallery": [args.gallery or ""],
                                              "--events": args.events or []})
    # Settings are checked (and a bad address refused) before the model loads.
    settings = LiveSettings(
        rgb=args.rgb, ir=args.ir, detector=args.detector,
        events=tuple(t for t in args.events or ["-"] if t != "none"),
        site_name=args.site_name, video_out=args.video_out,
        show=args.show, gallery=args.gallery, loop=args.loop, duration_s=args.duration,
        status_every_s=args.status_every, realtime=not args.no_realtime,
        timeout_s=args.timeout, fps=args.fps, serve=args.serve,
        serve_tls=tuple(args.serve_tls) if args.serve_tls else None,
        tracks_out=args.tracks_out, settle_tracks=not args.tracks_live_ids)
    if args.serve is not None:  # its token and TLS files too
        web_access(ServeAddress.parse(args.serve).host, settings.serve_token_file,
                   settings.serve_tls, generate=False)
    events = open_events(settings)  # a broker that cannot be reached fails before the model
    try:
        embedder = open_embedder(args.model, config=_model_embedding_config(args),
                                 device=args.device)
    except BaseException:
        events.close()
        raise
    try:
        summary = run_live(embedder, args.model, settings, _live_options(args), events=events)
    finally:
        events.close()  # already closed unless the run failed before it started
    if summary.failure is not None:  # outputs are flushed; the reason is the one line
        raise DeenError(summary.failure)
    for line in summary.lines():
        print(f"[deen run] {line}", file=sys.stderr)
    if args.video_out is not None:
        print(f"[deen run] wrote {args.video_out}", file=sys.stderr)
    return 0


def _cmd_gallery(args: argparse.Namespace) -> int:
    from deen.backends import open_embedder
    from deen.errors import redact_url
    from deen.modality import parse_modality
    from deen.runtime.gallery import Gallery
    from deen.runtime.live import enrol

    _warn_command_line_passwords(f"deen gallery {args.gallery_command}",
                                 {"--gallery": [args.gallery]})
    if args.gallery_command == "add":
        embedder = open_embedder(args.model, config=_model_embedding_config(args),
                             device=args.device)
        count = enrol(args.gallery, args.name, args.images, parse_modality(args.modality),
                      embedder, args.model)
        print(f"added {count} {args.modality} images of {args.name} to "
              f"{redact_url(args.gallery)}")
    elif args.gallery_command == "list":
        with Gallery.open_existing(args.gallery) as gallery:
            print(f"{'name':<24} {'visible':>8} {'infrared':>9}")
            for name, visible, infrared in gallery.identities():
                print(f"{name:<24} {visible:>8} {infrared:>9}")
    else:
        with Gallery.open_existing(args.gallery) as gallery:
            removed = gallery.remove(args.name)
            if not removed:
                raise DeenError(f"{gallery.location}: no identity named {args.name!r}")
            print(f"removed {removed} images of {args.name}")
    return 0


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _cmd_bench(args: argparse.Namespace) -> int:
    import tempfile

    from deen.bench.report import table, write_all
    from deen.bench.run import bench_model, check_backends, run_bench

    if (args.dataset is None) != (args.root is None):
        raise DeenError("--dataset and --root go together (accuracy on that dataset's test "
                        "protocol)")
    check_backends(args.backends)  # before the model loads
    model, source, input_size = bench_model(args.checkpoint, args.variant, args.input_size)
    with tempfile.TemporaryDirectory(prefix="deen-bench-") as scratch:
        report = run_bench(model, source, input_size, args.backends, args.batches,
                           _embedding_config(args), args.runs, args.warmup, Path(scratch),
                           calib=args.calib,
                           dataset=(args.dataset, args.root) if args.dataset else None,
                           device=args.device, models=args.model)
    print(table(report))
    for path in write_all(report, args.out_dir):
        print(f"wrote {path}")
    return 0


def input_size_arg(text: str) -> tuple[int, int]:
    """argparse type of a ``HEIGHTxWIDTH`` model input size (also used by benchmarks/)."""
    from deen.preprocess import check_input_size

    height, _, width = text.partition("x")
    if not (height.isdigit() and width.isdigit()):
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH, e.g. 384x144, got {text!r}")
    try:
        return check_input_size((int(height), int(width)))
    except ParameterError as exc:
        raise argparse.ArgumentTypeError(f"{text}: {exc.problem}") from None


def _add_bench_parser(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser(
        "bench", help="time backends against PyTorch, with accuracy beside speed",
        description="Time PyTorch (fp32, bf16 autocast, torch.compile), ONNX Runtime (fp32, "
                    "int8), OpenVINO (fp32, bf16, int8) and TensorRT (when present) on the "
                    "same inputs in one run: "
                    "p50/p90/p99 latency, images/s, speed-up, GFLOP/s, cold start, memory, "
                    "and cosine / rank-1 agreement against PyTorch fp32. Writes bench.json, "
                    "bench.md and bench.png.")
    _add_model_options(bench, checkpoint_required=False)
    bench.add_argument("--backends", type=lambda t: [b for b in t.split(",") if b],
                       default=formats.default_bench_backends(),
                       help=f"comma-separated, from {', '.join(formats.bench_backends())} "
                            f"(default: {','.join(formats.default_bench_backends())})")
    bench.add_argument("--model", type=_model_arg, action="append", default=[],
                       metavar="MODEL",
                       help="also time this export of the same model, made elsewhere: a file "
                            "(.onnx, .xml, .engine) or a served model (triton://HOST:PORT/NAME, "
                            "see deen serve), whose times include the trip to the server; "
                            "may be given more than once")
    bench.add_argument("--batches", type=_int_list, default=[1, 8, 32],
                       help="batch sizes (default 1,8,32)")
    bench.add_argument("--runs", type=_positive_int, default=20, help="timed runs per batch")
    bench.add_argument("--warmup", type=_positive_int, default=3, help="untimed runs first")
    bench.add_argument("--input-size", type=input_size_arg, default=None,
                       help="HEIGHTxWIDTH to time and measure at (default: a checkpoint's "
                            "trained size, else 384x144); images are resized to it")
    bench.add_argument("--calib", type=Path, default=None, metavar="DIR",
                       help="int8 calibration crops or videos (see deen export --calib)")
    bench.add_argument("--dataset", default=None, choices=datasets.names(),
                       help="measure accuracy on this dataset's test protocol (with --root): "
                            "each backend's rank-1/mAP and its rank-1 agreement with PyTorch "
                            "fp32 (default: generated people)")
    bench.add_argument("--root", type=Path, default=None, help="the --dataset folder")
    bench.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                       help="where the PyTorch backends run (the reference included; cuda "
                            "for GPU comparisons such as tensorrt vs PyTorch)")
    bench.add_argument("--out-dir", type=Path, default=Path("benchmarks/results"),
                       help="where bench.json/md/png go (default benchmarks/results)")
    _add_embedding_options(bench)
    bench.set_defaults(handler=_cmd_bench)


def _add_run_parser(commands: argparse._SubParsersAction) -> None:
    from deen.runtime import matching
    from deen.runtime.faults import DEFAULT_FAIL_AFTER_S
    from deen.runtime.gallery import DEFAULT_GALLERY_THRESHOLD
    from deen.runtime.pipeline import PipelineOptions

    run = commands.add_parser(
        "run", help="match people live across an RGB and an IR camera stream",
        description="Read a visible (--rgb) and an infrared (--ir) stream, detect and track "
                    "people in each, embed tracks with DEEN and match them across the pair. "
                    "A source is a video file, a camera index, an rtsp:// or http:// URL or an "
                    "image folder. Events go out as JSON lines; a status line every few "
                    "seconds on stderr. Ctrl-C stops cleanly.")
    run.add_argument("--rgb", required=True, metavar="SOURCE", help="the visible stream")
    run.add_argument("--ir", required=True, metavar="SOURCE", help="the infrared stream")
    run.add_argument("--model", type=_model_arg, required=True,
                     help="a checkpoint (.t/.pth/.pt) or an exported .onnx, .xml (OpenVINO) "
                          "or .engine")
    run.add_argument("--device", default=None, help="cpu or cuda (default: automatic)")
    run.add_argument("--detector", default="motion",
                     help="'motion' (moving regions of a fixed camera shaped like a person; "
                          "the default), 'hog' (OpenCV's people detector), a YOLO-family "
                          "detector exported to .onnx or OpenVINO .xml (YOLOv5, v8, 11 or "
                          "end-to-end outputs; COCO class 0 is the person), or a .jsonl file "
                          "of boxes")
    run.add_argument("--events", action="append", metavar="TARGET",
                     help="where events go; repeat for several, each getting every event: a "
                          "JSON-lines file (appended), '-' for stdout (the default), 'none', or "
                          "an MQTT broker mqtt[s]://[USER@]HOST[:PORT]/TOPIC-PREFIX (QoS 1, "
                          "topics PREFIX/BOX/EVENT; TLS options ?ca=FILE&cert=FILE&key=FILE&"
                          "insecure=1; the password from $DEEN_MQTT_PASSWORD)")
    run.add_argument("--site-name", default=None, metavar="BOX",
                     help="this box's name in broker topics (default: the host name)")
    run.add_argument("--video-out", type=Path, default=None, metavar="FILE.mp4",
                     help="write the annotated side-by-side view")
    run.add_argument("--show", action="store_true", help="show the annotated view live")
    run.add_argument("--tracks-out", type=Path, default=None, metavar="DIR",
                     help="write each stream's tracks (DIR/rgb.txt, DIR/ir.txt, MOTChallenge "
                          "format), the matches (matches.txt, matches.json) and gallery names "
                          "(names.txt) when the run ends; deen score reads them. Their "
                          "person ids are settled then, with the whole run seen")
    run.add_argument("--tracks-live-ids", action="store_true",
                     help="--tracks-out files carry the person ids the live run gave at the "
                          "time, as its events did (default: ids settled when the run ends, "
                          "from each track's whole appearance and who was seen together)")
    run.add_argument("--serve", default=None, metavar="HOST:PORT",
                     help="serve a web view while the run lasts: / (page), /video.mjpg, "
                          "/status.json, /events (Server-Sent Events); a bare :PORT or PORT "
                          "listens on loopback only, open; any other address asks for a "
                          "token: $DEEN_WEB_TOKEN, the file $DEEN_WEB_TOKEN_FILE, or one "
                          "generated and kept in ~/.local/state/deen/web-token (default: off)")
    run.add_argument("--serve-tls", nargs=2, type=Path, default=None,
                     metavar=("CERT.pem", "KEY.pem"),
                     help="serve the web view over HTTPS with this certificate and key")
    run.add_argument("--gallery", default=None, metavar="DB",
                     help="name tracks from this gallery (see deen gallery add): a SQLite "
                          "file, or postgresql://USER@HOST[:PORT]/DB shared by a site's boxes "
                          "(the password from $PGPASSWORD or ~/.pgpass); enrolments made "
                          "elsewhere are picked up within a second")
    run.add_argument("--loop", action="store_true", help="restart video files at their end")
    run.add_argument("--duration", type=float, default=0.0, metavar="S",
                     help="stop after S seconds (default: when the streams end, or Ctrl-C)")
    run.add_argument("--fps", type=float, default=0.0,
                     help="pace of files and folders (default: the file's rate; folders 10)")
    run.add_argument("--no-realtime", action="store_true",
                     help="process every frame of files/folders as fast as possible, "
                          "dropping none (offline use)")
    run.add_argument("--timeout", type=float, default=5.0, metavar="S",
                     help="give up opening or reading a URL after S seconds (default 5)")
    run.add_argument("--status-every", type=float, default=5.0, metavar="S",
                     help="status line period in seconds (0: none)")
    run.add_argument("--embed-budget", type=_positive_int, default=matching.DEFAULT_EMBED_BUDGET,
                     help="crops embedded per round; new tracks first, then the stalest "
                          f"(default {matching.DEFAULT_EMBED_BUDGET})")
    run.add_argument("--embed-batch", type=_positive_int, default=matching.DEFAULT_EMBED_BATCH,
                     help="crops per model call; the runtime's memory grows with it "
                          f"(default {matching.DEFAULT_EMBED_BATCH})")
    run.add_argument("--match-threshold", type=float, default=matching.DEFAULT_MATCH_THRESHOLD,
                     help="least cosine similarity of a visible/infrared pair "
                          f"(default {matching.DEFAULT_MATCH_THRESHOLD})")
    run.add_argument("--match-margin", type=float, default=PipelineOptions.match_margin,
                     help="a visible/infrared pair must beat each one's next most similar "
                          f"track by this much (default {PipelineOptions.match_margin:g})")
    run.add_argument("--no-relink", action="store_true",
                     help="give a person who leaves a stream and comes back a new id (default: "
                          "keep their id when their appearance clearly matches someone who "
                          "left; the threshold is calibrated on people seen together)")
    run.add_argument("--relink-lead", choices=["visible", "infrared", "none"],
                     default="visible",
                     help="the stream whose relinks the other follows: a track matched to a "
                          "track recognised as someone who left takes the id of that person's "
                          "partner, and does not relink on its own appearance (default "
                          "visible: infrared people look much alike; none: each stream "
                          "relinks on its own)")
    run.add_argument("--match-hold", type=float, default=PipelineOptions.match_hold,
                     help="hysteresis: a confirmed match is favoured by this much and kept "
                          "while its similarity stays above the threshold minus this "
                          f"(default {PipelineOptions.match_hold:g})")
    run.add_argument("--no-view-map", action="store_true",
                     help="match by appearance alone (default: learn where the visible "
                          "view lies in the infrared one from the people both see, as with "
                          "two cameras on one pole, and match only people at corresponding "
                          "places; cameras that see different places never get a map)")
    run.add_argument("--match-gate", type=float, default=PipelineOptions.match_gate,
                     help="with a view map: the farthest apart, in person heights, that a "
                          f"pair may be (default {PipelineOptions.match_gate:g})")
    run.add_argument("--placed-threshold", type=float,
                     default=PipelineOptions.placed_threshold,
                     help="with a view map: least cosine similarity of a pair at "
                          "corresponding places, instead of --match-threshold (default "
                          f"{PipelineOptions.placed_threshold:g})")
    run.add_argument("--clean-crops", action="store_true",
                     help="once a track has an appearance, add only crops clear of the "
                          "frame's edge and of other people (default: every crop)")
    run.add_argument("--no-level-light", action="store_true",
                     help="embed crops as captured (default: as if under the stream's "
                          "first frame's light, so that a person looks the same when the "
                          "picture grows brighter or darker)")
    run.add_argument("--confirm-rounds", type=_positive_int,
                     default=matching.DEFAULT_CONFIRM_ROUNDS,
                     help="rounds a pair must hold before it is a match "
                          f"(default {matching.DEFAULT_CONFIRM_ROUNDS})")
    run.add_argument("--break-rounds", type=_positive_int, default=matching.DEFAULT_BREAK_ROUNDS,
                     help="rounds without the pair before a match is broken "
                          f"(default {matching.DEFAULT_BREAK_ROUNDS})")
    run.add_argument("--gallery-threshold", type=float, default=DEFAULT_GALLERY_THRESHOLD,
                     help=f"least similarity to name a track (default {DEFAULT_GALLERY_THRESHOLD})")
    run.add_argument("--fail-after", type=float, default=DEFAULT_FAIL_AFTER_S, metavar="S",
                     help="end the run (exit 1) when detection, embedding or an output has "
                          "failed on every call for S seconds; single failures are counted "
                          f"and skipped (default {DEFAULT_FAIL_AFTER_S:g}; 0: never)")
    _add_embedding_options(run)
    run.set_defaults(handler=_cmd_run)

    gallery = commands.add_parser("gallery", help="enrol named identities for deen run")
    tools = gallery.add_subparsers(dest="gallery_command", required=True, metavar="ACTION")
    add = tools.add_parser("add", help="embed a folder of person crops under a name")
    add.add_argument("name")
    add.add_argument("--images", type=Path, required=True, metavar="DIR",
                     help="a folder of crops of this one person")
    add.add_argument("--modality", required=True, choices=["visible", "infrared"],
                     help="the camera the crops come from")
    add.add_argument("--model", type=_model_arg, required=True,
                     help="the model the gallery is built with: a checkpoint or an export "
                          "(.onnx, .xml, .engine); a gallery keeps to one model")
    add.add_argument("--device", default=None, help="cpu or cuda (default: automatic)")
    _add_embedding_options(add)
    listing = tools.add_parser("list", help="enrolled names and image counts")
    remove = tools.add_parser("remove", help="remove a name and its images")
    remove.add_argument("name")
    for parser in (add, listing, remove):
        parser.add_argument("--gallery", default="gallery.db", metavar="DB",
                            help="the gallery: a SQLite file or postgresql://USER@HOST[:PORT]/"
                                 "DB (the password from $PGPASSWORD or ~/.pgpass; default "
                                 "gallery.db)")
    gallery.set_defaults(handler=_cmd_gallery)


def _add_scene_parser(data_commands: argparse._SubParsersAction) -> None:
    from deen.runtime.scene import SceneSettings

    d = SceneSettings()
    scene = data_commands.add_parser(
        "scene", help="write a generated camera pair with MOTChallenge truth",
        description="Write a generated visible/infrared camera pair (people walking at "
                    "different depths, crossing and hiding each other, some seen by one "
                    "camera only, clutter, light changes and noise) with its truth: "
                    "visible.mp4, infrared.mp4, rgb/ and ir/ in MOTChallenge layout, "
                    "identities.csv and boxes.jsonl (exact boxes for deen run --detector).")
    scene.add_argument("--out", type=Path, required=True, metavar="DIR", help="a new folder")
    helps = {"seed": "seed of the people and their walks", "people": "people who walk through",
             "seconds": "length in seconds",
             "fps": "frames per second", "width": "frame width", "height": "frame height",
             "min_in_view": "fewest people walking at once",
             "max_in_view": "most people walking at once",
             "min_height": "height in pixels of the farthest people",
             "max_height": "height in pixels of the nearest people",
             "one_camera": "share of people only one camera sees",
             "occluders": "foreground poles that hide people",
             "clutter": "static background objects",
             "light": "amplitude of slow light changes, 0 up to (not including) 1",
             "noise": "sensor noise, standard deviation in grey levels"}
    for f in dataclasses.fields(SceneSettings):  # one flag per setting, checked by the class
        default = getattr(d, f.name)
        scene.add_argument(f"--{f.name.replace('_', '-')}", type=type(default), default=default,
                           help=f"{helps[f.name]} (default {default:g})".lstrip())
    scene.set_defaults(handler=_cmd_scene)


class _Help(argparse.HelpFormatter):
    """Every option's help ends with its default, unless it says it already or there is
    none to say (a flag, which takes no value; an option that is unset)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if ("default" in text or default is None or action.nargs == 0
                or default is argparse.SUPPRESS or default in ([], "")
                or not action.option_strings):
            return text
        shown = default if not isinstance(default, Path) else str(default)
        if isinstance(default, tuple) and len(default) == 2:  # an input size
            shown = f"{default[0]}x{default[1]}"
        return f"{text} (default: {shown})".strip()


class _Parser(argparse.ArgumentParser):
    """The CLI's parsers: :class:`_Help` formats every one of them (subcommands too)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _Help)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="deen", description="DEEN visible-infrared person re-identification toolchain.")
    parser.add_argument("--version", action="version", version=f"deen {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="export, verify and embed generated people; no download needed",
        description="Run the core pipeline on generated visible/infrared people: export to "
                    "ONNX, verify against PyTorch, print a cross-modality similarity matrix "
                    "and a PyTorch vs ONNX Runtime latency line. Without --checkpoint the "
                    "DEEN trained on generated people is used when it is cached here (see "
                    "--train), else a seeded random-initialised one; the demo says which.")
    _add_model_options(demo, checkpoint_required=False)
    demo.add_argument("--people", type=_positive_int, default=4,
                      help="generated identities (default 4)")
    demo.add_argument("--seed", type=int, default=0, help="seed for weights and images")
    demo.add_argument("--repeats", type=_positive_int, default=3,
                      help="timed calls per backend for the latency line, after one "
                           "warm-up (its median; default 3)")
    demo.add_argument("--out-dir", type=Path, default=None,
                      help="keep the exported model here (default: a temporary folder)")
    demo.add_argument("--train", action="store_true",
                      help="without --checkpoint: train a DEEN on generated people first when "
                           f"none is cached (about {GENERATED_MODEL_MINUTES} minutes on 2 cores; "
                           "cached in $DEEN_LIVE_MODEL_CACHE, default ~/.cache/deen/live-model)")
    _add_embedding_options(demo)
    demo.set_defaults(handler=_cmd_demo)

    export = commands.add_parser(
        "export", help="export a checkpoint to a verified deployable model (--engine: "
                       f"{', '.join(formats.export_engines())})",
        description="Export a DEEN checkpoint (inputs images N×3×384×144 float32 and modality N "
                    "int64; output the N×6D embedding) and verify it against PyTorch. Each "
                    "engine writes its model with a manifest; nothing is written if "
                    "verification fails.")
    export.add_argument("--engine", choices=formats.export_engines(), default="onnx",
                        help="; ".join(f"{f.name}: {f.description}" for f in formats.formats()
                                       if f.exportable))
    _add_model_options(export, checkpoint_required=True)
    export.add_argument("--out", type=Path, required=True,
                        metavar="|".join(f.output for f in formats.formats() if f.exportable),
                        help="the file (or, for triton, the folder) to write; its suffix "
                             "must suit --engine")
    export.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    export.add_argument("--precision", choices=formats.export_precisions(), default="fp32",
                        help="; ".join(f"{f.name}: {', '.join(f.precisions)}"
                                       for f in formats.formats() if f.exportable)
                        + ". int8: static quantisation (ONNX/TensorRT: the QDQ graph both "
                          "run; OpenVINO: NNCF), verified against fp32 by cosine")
    export.add_argument("--onnx", type=Path, default=None,
                        help="--engine openvino/trt: build from this deen ONNX export instead "
                             "of exporting one")
    trt = export.add_argument_group("TensorRT (--engine trt, or triton --with-trt)")
    trt.add_argument("--min-batch", type=_positive_int, default=1,
                     help="the engine profile's smallest batch")
    trt.add_argument("--opt-batch", type=_positive_int, default=8,
                     help="the batch TensorRT tunes its kernels for")
    trt.add_argument("--max-batch", type=_positive_int, default=32,
                     help="the engine profile's (and Triton's) largest batch (default 32)")
    trt.add_argument("--workspace-mib", type=_positive_int, default=2048,
                     help="GPU memory TensorRT may use while building, MiB")
    trt.add_argument("--timing-cache", type=Path, default=None, metavar="FILE",
                     help="read and update this TensorRT timing cache")
    trt.add_argument("--version-compatible", action="store_true",
                     help="an engine that later TensorRT versions can run")
    trt.add_argument("--hardware-compatible", action="store_true",
                     help="run on any Ampere or newer GPU")
    triton = export.add_argument_group("Triton (--engine triton)")
    triton.add_argument("--with-trt", action="store_true",
                        help="also build and add a TensorRT plan (needs TensorRT and a GPU)")
    triton.add_argument("--preferred-batches", type=_int_list, default=[8, 16, 32],
                        help="dynamic batching's preferred batch sizes, comma-separated "
                             "(default 8,16,32)")
    triton.add_argument("--instances", type=_positive_int, default=1,
                        help="model instances per device")
    export.add_argument("--calib", type=Path, default=None, metavar="DIR",
                        help="int8 calibration, balanced over both modalities: person crops "
                             "or videos in DIR/visible/ and DIR/infrared/, or the videos "
                             "DIR/visible.mp4 and DIR/infrared.mp4 (people found by the HOG "
                             "detector); default: generated people")
    export.add_argument("--dee-op", default="standard",
                        choices=tuple(dict.fromkeys(op for f in formats.formats()
                                                    for op in f.dee_ops)),
                        help="custom: DEE's six dilated convolutions as one deen.ops::DeeConv "
                             "node, run by the project's ONNX Runtime custom-op library "
                             "(default: standard ONNX operators only)")
    _add_embedding_options(export)
    export.set_defaults(handler=_cmd_export)

    train = commands.add_parser(
        "train", help="train DEEN (SYSU-MM01, RegDB, LLCM or your own data)",
        description="Train DEEN with the reference recipe. Multi-GPU: torchrun "
                    "--nproc_per_node N -m deen train ... (CPU: gloo backend).")
    train.add_argument("--config", type=Path, default=None, help="TOML file of settings")
    train.add_argument("--root", default=None, help="dataset folder (overrides the config)")
    train.add_argument("--dataset", default=None, choices=datasets.names(),
                       help="the --root folder's layout (overrides the config)")
    train.add_argument("--out", default=None, help="run folder (default runs/deen)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a setting, e.g. --set epochs=80 --set schedule=reference")
    train.add_argument("--resume", type=Path, default=None, metavar="CKPT",
                       help="continue from a last.pt exactly where it stopped")
    train.add_argument("--force", action="store_true",
                       help="start a new run in a run folder that holds one, deleting that "
                            "run's config, log and checkpoints (default: refuse)")
    train.set_defaults(handler=_cmd_train)

    evaluate = commands.add_parser(
        "eval", help="evaluate a model by the SYSU-MM01 / RegDB / LLCM protocols",
        description="Evaluate a checkpoint (.t/.pth/.pt) or an ONNX export on a dataset's "
                    "test protocol (all trials, both modes or directions): CMC R1/5/10/20, "
                    "mAP, mINP, as a table and optionally JSON.")
    evaluate.add_argument("--model", type=_model_arg, required=True,
                          help="a checkpoint (.t/.pth/.pt) or an export (.onnx, .xml "
                               "(OpenVINO), .engine (TensorRT))")
    evaluate.add_argument("--dataset", required=True, choices=datasets.names(),
                          help="the --root folder's layout; its papers' protocol is used")
    evaluate.add_argument("--root", type=Path, required=True, help="the dataset folder")
    evaluate.add_argument("--trials", type=_positive_int, default=None,
                          help="use the first N trials (default: all)")
    evaluate.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking")
    evaluate.add_argument("--variant", choices=sorted(VARIANTS), default=None,
                          help="network variant of a checkpoint (default: detected)")
    evaluate.add_argument("--device", default=None, help="cpu or cuda (default: automatic)")
    evaluate.add_argument("--json", type=Path, default=None, help="write the report here")
    evaluate.add_argument("--print-json", action="store_true", help="print the JSON report")
    evaluate.add_argument("--ranks", type=Path, default=None, metavar="DIR",
                          help="also write, per setting, each query of the first trial with "
                               "its top gallery images (same person marked): DIR/SETTING/"
                               "index.html, sheet-NNN.png and ranks.csv (rank of the first "
                               "true match, AP)")
    evaluate.add_argument("--top", type=_positive_int, default=10,
                          help="gallery images shown per query with --ranks")
    evaluate.set_defaults(handler=_cmd_eval)

    data = commands.add_parser("data", help="dataset tools")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="TOOL")
    synth = data_commands.add_parser(
        "synth", help="write a small synthetic dataset in a real layout",
        description="Write generated people (visible and infrared views of each identity) in "
                    "the SYSU-MM01, RegDB, LLCM or folder layout.")
    synth.add_argument("--layout", required=True, choices=datasets.synthetic_names(),
                       help="the dataset layout to write")
    synth.add_argument("--out", type=Path, required=True, help="a new folder")
    synth.add_argument("--identities", type=_positive_int, default=24,
                       help="people to generate (at least 4)")
    synth.add_argument("--per-camera", type=_positive_int, default=2,
                       help="images per identity per camera")
    synth.add_argument("--size", default="128x64", help="image size HEIGHTxWIDTH")
    synth.add_argument("--seed", type=int, default=0, help="seed of the people and images")
    synth.set_defaults(handler=_cmd_synth)
    _add_scene_parser(data_commands)

    score = commands.add_parser(
        "score", help="score a live run's tracks and matches against a scene's truth",
        description="Score a deen run --tracks-out folder against truth in MOTChallenge "
                    "layout (deen data scene, or your own footage annotated in CVAT and "
                    "exported as MOT 1.1): per stream HOTA, IDF1 and MOTA (TrackEval), and "
                    "across the pair match precision and recall, matches per true pair and "
                    "the time to the first correct match. Writes score.json, score.md and "
                    "a timeline PNG per person.")
    score.add_argument("--truth", type=Path, required=True, metavar="DIR",
                       help="truth folder: rgb/ and ir/ (gt/gt.txt, seqinfo.ini) and "
                            "identities.csv (stream,id,person[,name])")
    score.add_argument("--run", type=Path, required=True, metavar="DIR",
                       help="the folder deen run --tracks-out wrote")
    score.add_argument("--json", type=Path, default=None, metavar="FILE",
                       help="also write the scores here")
    score.add_argument("--out-dir", type=Path, default=None, metavar="DIR",
                       help="where score.json, score.md and timelines/ go (default: --run)")
    score.set_defaults(handler=_cmd_score)

    build_ops = commands.add_parser(
        "build-ops", help="build the native operator library (cpp_ext/)",
        description="Build libdeen_ops.so (the fused DEE convolution's CPU kernel and the ONNX "
                    "Runtime custom-op library) and, with --cuda, the CUDA kernels. Skips what "
                    "is up to date.")
    build_ops.add_argument("--cuda", action="store_true", help="also build the CUDA kernels")
    build_ops.add_argument("--force", action="store_true", help="rebuild even if up to date")
    build_ops.set_defaults(handler=_cmd_build_ops)

    _add_run_parser(commands)
    _add_bench_parser(commands)
    _add_serve_parser(commands)
    return parser


def _add_serve_parser(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser(
        "serve", help="serve an exported model to many boxes (Triton Inference Server)",
        description="Serve an exported ONNX model (deen export --engine onnx) with Triton "
                    "Inference Server and dynamic batching, so that several deen run, eval, "
                    "gallery or bench processes share one model: they name it "
                    "--model triton://HOST:PORT/NAME. Prints one line once it answers; "
                    "serves until Ctrl-C or SIGTERM.")
    serve.add_argument("model", type=Path, metavar="MODEL.onnx", help="the exported model")
    serve.add_argument("--listen", default="127.0.0.1:8000", metavar="HOST:PORT",
                       help="the HTTP address to serve on (default 127.0.0.1:8000)")
    serve.add_argument("--name", default="deen", help="the model's name (default deen)")
    serve.add_argument("--max-batch", type=_positive_int, default=32,
                       help="most images in one batched call (default 32)")
    serve.add_argument("--queue-delay-us", type=int, default=2000, metavar="US",
                       help="how long a request may wait for others to batch with, in "
                            "microseconds (default 2000)")
    serve.set_defaults(handler=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    import signal
    import threading

    from deen.serve.server import Listen, ModelServer

    listen = Listen.parse(args.listen, "listen")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with ModelServer(args.model, listen, args.name, args.max_batch,
                     args.queue_delay_us) as server:
        print(f"[deen serve] serving {args.model} as {server.url} (Triton Inference Server, "
              "dynamic batching); Ctrl-C stops", flush=True)
        while not stop.wait(0.5):
            if server.process.poll() is not None:
                raise DeenError(f"{args.model}: the model server ended "
                                f"(exit {server.process.returncode})")
    return 0


#: Library parameters set by a flag of another name.
_PARAMETER_DESTS = {"overrides": "set", "onnx_path": "onnx", "tls": "serve_tls"}


def _flags_of(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, str]:
    """dest → option string of every flag on the path of subcommands ``args`` took."""
    flags: dict[str, str] = {}
    while True:
        nested = None
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                nested = action.choices.get(getattr(args, action.dest, None) or "")
            elif action.option_strings:
                flags.setdefault(action.dest, max(action.option_strings, key=len))
        if nested is None:
            return flags
        parser = nested


def _in_flags(exc: ParameterError, flags: dict[str, str]) -> str:
    """A library parameter error worded for the command line: ``--flag value: problem``."""
    def flag(name: str) -> str:
        return flags.get(_PARAMETER_DESTS.get(name, name), name)

    value = exc.value if not isinstance(exc.value, bool) else ""
    if isinstance(value, float):
        value = f"{value:g}"  # as typed: 0, not 0.0
    subject = flag(exc.parameter)
    subject = f"{subject} {value}".rstrip() if subject.startswith("--") else str(exc).split(
        ": ", 1)[0]
    return exc.render(flag, subject)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug is global but works wherever it is typed: `deen export … --debug` too.
    debug = "--debug" in argv
    args = parser.parse_args([a for a in argv if a != "--debug"])
    args.debug = args.debug or debug
    sub = getattr(args, f"{args.command}_command", None)
    command = f"deen {args.command}{f' {sub}' if sub else ''}"
    try:
        return args.handler(args)
    except DeenError as exc:
        if args.debug:
            traceback.print_exc()
        message = _in_flags(exc, _flags_of(parser, args)) if isinstance(
            exc, ParameterError) else str(exc)
        print(f"{command}: error: {message}", file=sys.stderr)
        return 1
    except OSError as exc:  # unwritable folder, full disk, …: the user's to fix
        if args.debug:
            traceback.print_exc()
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not bad input: still one line unless --debug
        if args.debug:
            traceback.print_exc()
        else:
            print(f"{command}: internal error: {type(exc).__name__}: {exc} "
                  "(rerun with --debug for the traceback)", file=sys.stderr)
        return 1


def _alias(command: str) -> Callable[[], int]:
    def entry() -> int:
        return main([command, *sys.argv[1:]])

    return entry


export_main = _alias("export")
run_main = _alias("run")
bench_main = _alias("bench")
train_main = _alias("train")
eval_main = _alias("eval")

if __name__ == "__main__":
    sys.exit(main())
