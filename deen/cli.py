"""The ``deen`` command and its aliases (``deen-export`` = ``deen export``, …).

Errors the user can fix (a bad file, a bad argument, a failed verification) print one line,
``deen <command>: error: <what is wrong>``; ``--debug`` shows the traceback instead.

Exit codes: argument errors exit 2, input and run errors exit 1. An argument error is a value
wrong in itself, found before any work: what argparse refuses (a missing flag, a flag its
``type`` cannot parse), and a library :class:`~deen.errors.BadValueError` (malformed or out of
range, e.g. ``--a 5``), which handlers raise too for checks argparse cannot make alone.
Everything else that is the user's to fix exits 1: a :class:`~deen.errors.DeenError` or any
other :class:`~deen.errors.ParameterError` (an input that is missing or unreadable, an output
that cannot be written or holds an earlier result, a device that is not there, a failed
verification) and an ``OSError``. A :class:`~deen.errors.ParameterError` names the library
parameter; :func:`main` rewords it with the flag that sets it (``--a 5: …``).

Outputs are checked with :func:`deen.fileio.check_output` before a command starts its work.
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
from deen.errors import BadValueError, DeenError, ParameterError, UsageError
from deen.modality import parse_modality
from deen.train.generated_model import MINUTES as GENERATED_MODEL_MINUTES
from deen.variants import VARIANTS


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seed(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"a seed is 0 or more, got {value}")
    return value


def _add_force_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--force", action="store_true",
                        help=f"replace {what} in the output folder, deleting it first "
                             "(default: refuse, so that one folder never mixes two results)")


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


#: --device of the commands that open a model with open_embedder (run keeps its own).
_DEVICE_HELP = ("cpu or cuda (cuda:N: the Nth GPU); an OpenVINO .xml also takes an OpenVINO "
                "device (CPU, GPU, AUTO, ...); default: a GPU when the model's runtime has one")


def _image_size(text: str) -> tuple[int, int]:
    """argparse type of an image size ``HEIGHTxWIDTH`` (positive integers)."""
    height, _, width = text.partition("x")
    if not (height.isdigit() and width.isdigit() and int(height) > 0 and int(width) > 0):
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH, e.g. 128x64, got {text!r}")
    return int(height), int(width)


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
    from deen.fileio import check_output

    row = formats.get(args.engine)
    if args.precision not in row.precisions:
        takers = [f.name for f in formats.formats() if f.exportable
                  and args.precision in f.precisions]
        raise BadValueError("precision", args.precision, f"is for {{engine}} "
                            f"{', '.join(takers)}; {{engine}} {row.name} takes "
                            f"{', '.join(row.precisions)}", mentions=("engine",))
    row.check_export(args.out, args.precision, args.dee_op)
    folder = row.output.endswith("/")  # a model repository, written as a new folder
    check_output(args.out, "out", folder=folder, new=folder)
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
    from deen.demo import KEPT, run_demo
    from deen.fileio import check_output

    config = _embedding_config(args)
    if args.out_dir is not None:
        check_output(args.out_dir, "out_dir", folder=True, results=KEPT, force=args.force)
    return run_demo(args.checkpoint, args.variant, args.people, args.seed, config,
                    args.out_dir, repeats=args.repeats, train=args.train,
                    log=lambda line: print(line, flush=True))


def _cmd_train(args: argparse.Namespace) -> int:
    from deen.train.config import load_config
    from deen.train.trainer import Trainer, read_resume_state

    overrides = list(args.set)
    overrides += [f"{k}={v}" for k, v in (("root", args.root), ("dataset", args.dataset),
                                          ("out", args.out)) if v is not None]
    if args.print_config:
        print(load_config(args.config, overrides, check=False).to_toml(), end="")
        return 0
    resume = read_resume_state(args.resume) if args.resume is not None else None
    # A resumed run keeps its saved settings unless a config file replaces them.
    base = resume["training"]["config"] if resume is not None and args.config is None else None
    config = load_config(args.config, overrides, base=base)
    trainer = Trainer(config, resume=resume, force=args.force)
    last = trainer.train()
    if trainer.rank == 0:
        print(f"finished: {last}" if trainer.stopped_at is None else
              f"stopped ({trainer.stopped_at}); saved {last}; resume with: deen train "
              f"--resume {last}")
    return 130 if trainer.stopped_at is not None and config.stop_after_steps == 0 else 0


def _cmd_eval(args: argparse.Namespace) -> int:
    import json

    from deen.backends import open_embedder
    from deen.eval.evaluate import evaluate_dataset, protocol_settings, write_report
    from deen.fileio import check_output

    if args.json is not None:
        check_output(args.json, "json")
    if args.ranks is not None:  # one folder per setting of the protocol
        settings = [name for name, _ in protocol_settings(args.dataset, args.root, args.trials)]
        check_output(args.ranks, "ranks", folder=True, results=settings, force=args.force)
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
    from deen.fileio import check_output

    check_output(args.out, "out", folder=True, new=True)
    out = write_synthetic_dataset(args.out, args.layout, args.identities, args.per_camera,
                                  args.size, args.seed)
    print(f"wrote a synthetic {args.layout} dataset to {out}")
    return 0


def _cmd_scene(args: argparse.Namespace) -> int:
    from deen.fileio import check_output
    from deen.scenes import VIEWS, SceneSettings, write_scene

    if args.views not in VIEWS:  # a kind of scene there is not: bad input
        raise DeenError(f"--views {args.views}: no such camera layout (choose "
                        f"{' or '.join(VIEWS)})")
    settings = _dataclass_from_args(SceneSettings, args)
    # before the progress line, so the error is the only line
    check_output(args.out, "out", folder=True, new=True)
    frames = ", ".join(f"{n} {s} frames at {fps:g} fps" for s, (fps, _, n)
                       in settings.stream_timing().items())
    print(f"writing a {settings.seconds:g} s scene of {settings.people} people, views "
          f"{settings.views} ({frames}) ...", flush=True)
    scene = write_scene(args.out, settings)
    print(f"wrote {scene.root}: {scene.visible.name}, {scene.infrared.name}, rgb/ and ir/ "
          "(MOTChallenge truth), identities.csv, boxes.jsonl")
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from deen.eval.live_score import SCORE_FILES, score_run, write_score
    from deen.fileio import atomic_path, check_output

    out_dir = args.out_dir or args.run
    if args.json is not None:
        check_output(args.json, "json")
    if args.out_dir is not None or args.run.is_dir():  # a bad --run is score_run's to name
        check_output(out_dir, "out_dir", folder=True, results=SCORE_FILES, force=args.force)
    score = score_run(args.truth, args.run)
    print(score.markdown(), end="")
    for path in write_score(score, out_dir):
        if path.suffix != ".png":
            print(f"wrote {path}")
    print(f"wrote {len(score.timelines)} timelines to {Path(out_dir) / 'timelines'}")
    if args.json is not None:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(score.to_dict(), indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def _cmd_tracks(args: argparse.Namespace) -> int:
    from deen.runtime.tracks_out import settle_run

    counts = settle_run(args.run, args.out, force=args.force)
    print(f"settled the ids of {args.run} offline into {args.out}: persons per stream "
          + ", ".join(f"{s} {counts[f'{s}_live']} live -> {counts[f'{s}_settled']} settled"
                      for s in ("rgb", "ir"))
          + " (offline: decided after the run, with the whole run seen; a live user never "
          "saw these ids)")
    return 0


#: deen run's flags, each setting one key of its settings tree
#: (:class:`deen.runtime.settings.LiveSettings`): dest → key.
RUN_FLAGS = {"rgb": "sources.rgb", "ir": "sources.ir", "model": "model.path",
             "device": "model.device", "flip": "model.flip", "a": "model.a",
             "detector": "detection.detector", "events": "outputs.events",
             "site_name": "outputs.site_name", "video_out": "outputs.video_out",
             "show": "outputs.show", "tracks_out": "outputs.tracks_out",
             "serve": "outputs.serve", "gallery": "gallery.path", "loop": "sources.loop",
             "duration": "run.duration_s", "realtime": "sources.realtime"}


def _run_settings(args: argparse.Namespace, flags: dict[str, str]):
    """deen run's settings: defaults ← --config ← --set ← the flags given. A bad key or
    value is a :class:`UsageError` naming the flag, ``--set`` item or file that gave it."""
    from deen import settings as tree
    from deen.runtime.settings import LiveSettings
    from deen.settings import SettingError

    values = {}
    for dest, key in RUN_FLAGS.items():
        value = getattr(args, dest)
        if value is None:
            continue
        if dest == "events":
            value = tuple(t for t in value if t != "none")
        elif isinstance(value, Path):
            value = str(value)
        values[key] = value
    try:
        return tree.load(LiveSettings, args.config, args.set, values)
    except SettingError as exc:
        raise UsageError(_setting_message(exc, args, values, flags)) from None


def _setting_message(exc, args: argparse.Namespace, values: dict[str, Any],
                     flags: dict[str, str]) -> str:
    """A settings error in the command line's words: the flag, ``--set`` item or file."""
    key, value = exc.parameter, exc.value
    shown = f"{value:g}" if isinstance(value, float) else str(value)
    if key == "config":
        return f"--config {shown}: {exc.problem}"
    if key == "overrides":
        return f"--set {shown}: {exc.problem}"
    if exc.source == "overrides" or (exc.source is None and key not in values
                                     and any(s.partition("=")[0].strip() == key
                                             for s in args.set)):
        return f"--set {key}={shown}: {exc.problem}"
    if exc.source is not None or key not in values:
        where = exc.source or args.config
        return f"{where}: {key} = {shown}: {exc.problem}".replace(" = : ", ": ")
    dest = next(d for d, k in RUN_FLAGS.items() if k == key)
    return f"{flags.get(dest, dest)} {shown}: {exc.problem}"


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
    from deen import settings as tree
    from deen.runtime.sources import quiet_video_backends

    settings = _run_settings(args, _flags_of(build_parser(), args))
    if args.print_config:
        print(tree.to_toml(settings), end="")
        return 0
    for key, flag in (("sources.rgb", "--rgb"), ("sources.ir", "--ir"),
                      ("model.path", "--model")):
        if not tree.get(settings, key):
            raise UsageError(f"{flag} is required (or {key} in the --config file)")
    from deen.address import ListenAddress
    from deen.backends import open_embedder
    from deen.embedding import EmbeddingConfig
    from deen.eval.live_score import SCORE_FILES
    from deen.fileio import check_output
    from deen.runtime.event_sinks import SinkKind, sink_format
    from deen.runtime.live import open_events, run_live
    from deen.runtime.tracks_out import TRACKS_FILES
    from deen.runtime.web_access import web_access

    if not args.debug:
        quiet_video_backends()
    _warn_command_line_passwords("deen run", {
        "--gallery": [args.gallery or ""], "--events": args.events or [],
        "--set": [item.partition("=")[2] for item in args.set]})
    out = settings.outputs  # every output is checked before any work starts
    if out.serve:  # the address, and the web view's token and TLS files
        web_access(ListenAddress.parse(out.serve).host, settings.web.token_file or None,
                   settings.web.tls, generate=False)
    if out.tracks_out:
        check_output(out.tracks_out, "tracks_out", folder=True,
                     results=(*TRACKS_FILES, *SCORE_FILES), force=args.force)
    if out.video_out:
        check_output(out.video_out, "video_out")
    for target in out.events:
        if target != "-" and sink_format(target).kind is SinkKind.FILE:
            check_output(target, "events")
    model = _model_arg(settings.model.path)
    config = EmbeddingConfig(flip=settings.model.flip,
                             a=None if settings.model.a < 0 else settings.model.a)
    if not formats.is_checkpoint(model) and config == EmbeddingConfig():
        config = None  # an export's own settings
    events = open_events(settings)  # a broker that cannot be reached fails before the model
    try:
        embedder = open_embedder(model, config=config, device=settings.model.device or None)
    except BaseException:
        events.close()
        raise
    try:
        summary = run_live(embedder, model, settings, events=events,
                           log=lambda line: print(f"[deen run] {line}", file=sys.stderr,
                                                  flush=True))
    finally:
        events.close()  # already closed unless the run failed before it started
    if summary.failure is not None:  # outputs are flushed; the reason is the one line
        raise DeenError(summary.failure)
    for line in summary.lines():
        print(f"[deen run] {line}", file=sys.stderr)
    if settings.outputs.video_out:
        print(f"[deen run] wrote {settings.outputs.video_out}", file=sys.stderr)
    return 0


def _cmd_gallery(args: argparse.Namespace) -> int:
    from deen.backends import open_embedder
    from deen.errors import redact_url
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

    from deen.bench.report import REPORT_FILES, table, write_all
    from deen.bench.run import bench_model, check_backends, run_bench
    from deen.bench.targets import cpu_verdict
    from deen.fileio import check_output

    if (args.dataset is None) != (args.root is None):
        given = "dataset" if args.dataset is not None else "root"
        raise BadValueError(given, getattr(args, given), "{dataset} and {root} go together "
                            "(accuracy on that dataset's test protocol)",
                            mentions=("dataset", "root"))
    check_backends(args.backends)  # before the model loads
    check_output(args.out_dir, "out_dir", folder=True, results=REPORT_FILES, force=args.force)
    model, source, input_size = bench_model(args.checkpoint, args.variant, args.input_size)
    with tempfile.TemporaryDirectory(prefix="deen-bench-") as scratch:
        report = run_bench(model, source, input_size, args.backends, args.batches,
                           _embedding_config(args), args.runs, args.warmup, Path(scratch),
                           calib=args.calib,
                           dataset=(args.dataset, args.root) if args.dataset else None,
                           device=args.device, models=args.model)
    print(table(report))
    verdict = cpu_verdict(report.to_dict())
    if verdict is not None:
        for line in verdict.lines():
            print(line[2:].replace("**", ""))
    for path in write_all(report, args.out_dir):
        print(f"wrote {path}")
    return 0


def _input_size_arg(text: str) -> tuple[int, int]:
    """argparse type of a ``HEIGHTxWIDTH`` model input size."""
    from deen.preprocess import parse_input_size

    try:
        return parse_input_size(text)
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
    bench.add_argument("--input-size", type=_input_size_arg, default=None,
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
    _add_force_option(bench, "an earlier bench.json/md/png")
    _add_embedding_options(bench)
    bench.set_defaults(handler=_cmd_bench)


def _add_run_parser(commands: argparse._SubParsersAction) -> None:
    from deen import settings as tree
    from deen.runtime.detect import detector_help
    from deen.runtime.settings import LiveSettings

    helps = {key: f.metadata.get("help", "") for key, f, _ in tree.leaves(LiveSettings)}
    defaults = LiveSettings()

    def about(dest: str, extra: str = "") -> str:
        key = RUN_FLAGS[dest]
        default = tree.get(defaults, key)
        shown = f"; default {default}" if default not in ("", (), False, True) else ""
        return f"{helps[key]}{extra} [{key}{shown}]"

    run = commands.add_parser(
        "run", help="match people live across an RGB and an IR camera stream",
        description="Read a visible (--rgb) and an infrared (--ir) stream, detect and track "
                    "people in each, embed tracks with DEEN and match them across the pair. "
                    "Events go out as JSON lines; a status line every few seconds on stderr. "
                    "Ctrl-C stops cleanly. Every setting is a key of one settings tree: a "
                    "flag sets the key shown in brackets, --config FILE reads a TOML file of "
                    "them, --set KEY=VALUE overrides one (flags win over --set, --set over "
                    "the file), --print-config shows them all with their help.")
    run.add_argument("--rgb", metavar="SOURCE", help=about("rgb"))
    run.add_argument("--ir", metavar="SOURCE", help=about("ir"))
    run.add_argument("--model", metavar="MODEL",
                     help=about("model", f": {formats.model_suffix_help()}"))
    run.add_argument("--device", help=about("device"))
    run.add_argument("--detector", metavar="DETECTOR", help=f"{detector_help()} "
                     f"[detection.detector; default {defaults.detection.detector}]")
    run.add_argument("--events", action="append", metavar="TARGET",
                     help="where events go; repeat for several: a JSON-lines file "
                          "(appended), '-' for stdout (the default), 'none', or an MQTT broker "
                          "mqtt[s]://[USER@]HOST[:PORT]/TOPIC-PREFIX (QoS 1, topics "
                          "PREFIX/BOX/EVENT; TLS options ?ca=FILE&cert=FILE&key=FILE&"
                          "insecure=1; the password from $DEEN_MQTT_PASSWORD) "
                          "[outputs.events]")
    run.add_argument("--site-name", metavar="BOX", help=about("site_name"))
    run.add_argument("--video-out", type=Path, metavar="FILE.mp4", help=about("video_out"))
    run.add_argument("--show", action="store_const", const=True, help=about("show"))
    run.add_argument("--tracks-out", type=Path, metavar="DIR",
                     help=about("tracks_out", " (DIR/rgb.txt, DIR/ir.txt in MOTChallenge "
                                "format, matches.txt, matches.json, names.txt)"))
    run.add_argument("--serve", metavar="HOST:PORT",
                     help=about("serve", ": / (page), /video.mjpg, /status.json, /events; a "
                                "bare :PORT or PORT listens on loopback only, open; any other "
                                "address asks for a token: web.token_file, $DEEN_WEB_TOKEN, "
                                "the file $DEEN_WEB_TOKEN_FILE, or one generated and kept in "
                                "~/.local/state/deen/web-token; HTTPS with web.tls_cert and "
                                "web.tls_key"))
    run.add_argument("--gallery", metavar="DB",
                     help=about("gallery", " (the password from $PGPASSWORD or ~/.pgpass)"))
    run.add_argument("--loop", action="store_const", const=True, help=about("loop"))
    run.add_argument("--duration", type=float, metavar="S", help=about("duration"))
    run.add_argument("--no-realtime", dest="realtime", action="store_const", const=False,
                     help="process every frame of files/folders as fast as possible, dropping "
                          "none (offline use) [sources.realtime = false]")
    run.add_argument("--no-flip", dest="flip", action="store_const", const=False,
                     help="a checkpoint: embed the crop only, without its horizontal flip "
                          "[model.flip = false]")
    run.add_argument("--a", type=float, metavar="A", help=about("a"))
    run.add_argument("--force", action="store_true",
                     help="clear an earlier run's files from the --tracks-out folder (default: "
                          "refuse a folder holding an earlier run)")
    run.add_argument("--config", type=Path, metavar="FILE",
                     help="a TOML file of settings (see --print-config)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override one setting, e.g. --set matching.threshold=0.6 "
                          "(see --print-config for every key)")
    run.add_argument("--print-config", action="store_true",
                     help="print the effective settings as TOML, each with its help, and exit")
    run.set_defaults(handler=_cmd_run)

    gallery = commands.add_parser("gallery", help="enrol named identities for deen run")
    tools = gallery.add_subparsers(dest="gallery_command", required=True, metavar="ACTION")
    add = tools.add_parser("add", help="embed a folder of person crops under a name")
    add.add_argument("name", metavar="NAME",
                     help="the person's name, as deen run reports it (adding to a name "
                          "that is there adds images to it)")
    add.add_argument("--images", type=Path, required=True, metavar="DIR",
                     help="a folder of crops of this one person")
    add.add_argument("--modality", required=True, choices=["visible", "infrared"],
                     help="the camera the crops come from")
    add.add_argument("--model", type=_model_arg, required=True,
                     help="the model the gallery is built with: a checkpoint, an export "
                          "(.onnx, .xml, .engine) or a served model (triton://HOST:PORT/NAME); "
                          "a gallery keeps to one checkpoint and embedding settings, so any "
                          "verified export of that checkpoint may add to it")
    add.add_argument("--device", default=None, help=_DEVICE_HELP)
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
    from deen import settings as tree
    from deen.scenes import SceneSettings

    defaults = SceneSettings()
    scene = data_commands.add_parser(
        "scene", help="write a generated camera pair with MOTChallenge truth",
        description="Write a generated visible/infrared camera pair with its truth: "
                    "visible.mp4 and infrared.mp4 (each camera at its own frame rate and "
                    "clock), rgb/ and ir/ in MOTChallenge layout, identities.csv and "
                    "boxes.jsonl (exact boxes for deen run --detector). --views overlap: "
                    "two cameras on one pole; --views apart: two places a walk apart, people "
                    "seen in one and later in the other. People walk at different depths, "
                    "cross and hide each other, some in groups and some stopping, some seen "
                    "by one camera only; clutter, local shadows, light changes and noise.")
    scene.add_argument("--out", type=Path, required=True, metavar="DIR", help="a new folder")
    for key, f, kind in tree.leaves(SceneSettings):  # one flag per setting, checked by it
        default = tree.get(defaults, key)
        choices = f.metadata.get("choices")
        takes = f"; {' or '.join(choices)}" if choices else ""
        scene.add_argument(f"--{key.replace('_', '-')}", type=kind, default=default,
                           help=f"{f.metadata['help']}{takes} (default {default})")
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
                    "ONNX and verify it against PyTorch, quantise an OpenVINO int8 IR and "
                    "verify it, print a cross-modality similarity matrix and a PyTorch vs ONNX "
                    "Runtime vs OpenVINO latency line, then run the live pipeline (deen run) "
                    "on a generated camera pair with the fastest of them. Without "
                    "--checkpoint the DEEN trained on generated people is used when it is "
                    "cached here (see --train), else a seeded random-initialised one; the "
                    "demo says which.")
    _add_model_options(demo, checkpoint_required=False)
    demo.add_argument("--people", type=_positive_int, default=4,
                      help="generated identities (default 4)")
    demo.add_argument("--seed", type=_seed, default=0, help="seed for weights and images")
    demo.add_argument("--repeats", type=_positive_int, default=3,
                      help="timed calls per backend for the latency line, after one "
                           "warm-up (its median; default 3)")
    demo.add_argument("--out-dir", type=Path, default=None,
                      help="keep the checkpoint used (deen.pt, for deen export --checkpoint) "
                           "and the exported models (deen.onnx, deen_int8.xml) here (default: "
                           "a temporary folder)")
    _add_force_option(demo, "an earlier demo's models")
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
    export.add_argument("--opset", type=int, default=18,
                        help="ONNX opset, 18 up to the newest the installed ONNX knows "
                             "(default 18)")
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
                       help="override a setting, e.g. --set epochs=80 --set schedule=reference; "
                            "--print-config lists every KEY with its value")
    train.add_argument("--print-config", action="store_true",
                       help="print the settings (defaults, then --config, then --set and the "
                            "flags above) as TOML, the --config format, and exit")
    train.add_argument("--resume", type=Path, default=None, metavar="CKPT",
                       help="continue from a last.pt exactly where it stopped")
    train.add_argument("--force", action="store_true",
                       help="start a new run in a run folder that holds one, deleting that "
                            "run's config, log and checkpoints (default: refuse)")
    train.set_defaults(handler=_cmd_train)

    evaluate = commands.add_parser(
        "eval", help="evaluate a model by the SYSU-MM01 / RegDB / LLCM protocols",
        description="Evaluate a checkpoint (.t/.pth/.pt), an export (.onnx, OpenVINO .xml, "
                    "TensorRT .engine) or a served model on a dataset's test protocol (all "
                    "trials, both modes or directions): CMC R1/5/10/20, mAP, mINP, as a table "
                    "and optionally JSON.")
    evaluate.add_argument("--model", type=_model_arg, required=True,
                          help="a checkpoint (.t/.pth/.pt), an export (.onnx, .xml "
                               "(OpenVINO), .engine (TensorRT)) or a served model "
                               "(triton://HOST:PORT/NAME, see deen serve)")
    evaluate.add_argument("--dataset", required=True, choices=datasets.names(),
                          help="the --root folder's layout; its papers' protocol is used")
    evaluate.add_argument("--root", type=Path, required=True, help="the dataset folder")
    evaluate.add_argument("--trials", type=_positive_int, default=None,
                          help="use the first N trials (default: all)")
    evaluate.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking")
    evaluate.add_argument("--variant", choices=sorted(VARIANTS), default=None,
                          help="network variant of a checkpoint (default: detected)")
    evaluate.add_argument("--device", default=None, help=_DEVICE_HELP)
    evaluate.add_argument("--json", type=Path, default=None, help="write the report here")
    evaluate.add_argument("--print-json", action="store_true", help="print the JSON report")
    evaluate.add_argument("--ranks", type=Path, default=None, metavar="DIR",
                          help="also write, per setting, each query of the first trial with "
                               "its top gallery images (same person marked): DIR/SETTING/"
                               "index.html, sheet-NNN.png and ranks.csv (rank of the first "
                               "true match, AP)")
    evaluate.add_argument("--top", type=_positive_int, default=10,
                          help="gallery images shown per query with --ranks")
    _add_force_option(evaluate, "earlier --ranks results")
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
    synth.add_argument("--size", type=_image_size, default=(128, 64),
                       help="image size HEIGHTxWIDTH (default 128x64)")
    synth.add_argument("--seed", type=_seed, default=0, help="seed of the people and images")
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
    _add_force_option(score, "an earlier score")
    score.set_defaults(handler=_cmd_score)

    build_ops = commands.add_parser(
        "build-ops", help="build the native operator library (cpp_ext/)",
        description="Build libdeen_ops.so (the fused DEE convolution's CPU kernel and the ONNX "
                    "Runtime custom-op library) and, with --cuda, the CUDA kernels. Skips what "
                    "is up to date.")
    build_ops.add_argument("--cuda", action="store_true", help="also build the CUDA kernels")
    build_ops.add_argument("--force", action="store_true", help="rebuild even if up to date")
    build_ops.set_defaults(handler=_cmd_build_ops)

    tracks = commands.add_parser("tracks", help="tools for a deen run --tracks-out folder")
    tracks_commands = tracks.add_subparsers(dest="tracks_command", required=True,
                                            metavar="TOOL")
    settle = tracks_commands.add_parser(
        "settle", help="decide a run's person ids again offline, with the whole run seen",
        description="Read a deen run --tracks-out folder and write its files again into a new "
                    "folder with person ids settled after the run: each stream's tracks "
                    "clustered by their whole appearance (never two tracks seen together), "
                    "the infrared stream around the visible persons it was matched to. The "
                    "folder is marked offline (settled.json); deen score labels its numbers "
                    "offline: no live user saw these ids.")
    settle.add_argument("run", type=Path, metavar="RUN", help="the deen run --tracks-out folder")
    settle.add_argument("--out", type=Path, required=True, metavar="DIR", help="a new folder")
    settle.add_argument("--force", action="store_true",
                        help="replace DIR if it exists (default: refuse)")
    settle.set_defaults(handler=_cmd_tracks)

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

    from deen.address import ListenAddress
    from deen.serve.server import ModelServer

    listen = ListenAddress.parse(args.listen, "listen")
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
_PARAMETER_DESTS = {"overrides": "set", "onnx_path": "onnx", "tls_cert": "web.tls_cert",
                    "tls_key": "web.tls_key", "token_file": "web.token_file"}


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
        mapped = _PARAMETER_DESTS.get(name, name)
        return flags.get(mapped, mapped)

    value = exc.value if not isinstance(exc.value, bool) else ""
    if isinstance(value, float):
        value = f"{value:g}"  # as typed: 0, not 0.0
    subject = flag(exc.parameter)
    # A flag or a settings key (web.tls_cert) is named with the value; else the library's
    # own wording stands.
    subject = f"{subject} {value}".rstrip() if subject.startswith("--") or "." in subject \
        else str(exc).split(": ", 1)[0]
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
    except UsageError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"{command}: error: {exc}", file=sys.stderr)
        return 2
    except DeenError as exc:
        if args.debug:
            traceback.print_exc()
        message = _in_flags(exc, _flags_of(parser, args)) if isinstance(
            exc, ParameterError) else str(exc)
        print(f"{command}: error: {message}", file=sys.stderr)
        return 2 if isinstance(exc, BadValueError) else 1
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
