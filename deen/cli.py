"""The ``deen`` command and its aliases (``deen-export`` = ``deen export``, …).

Errors the user can fix (a bad file, a bad argument, a failed verification) print one line,
``deen <command>: error: <what is wrong>``, and exit 1; ``--debug`` shows the traceback
instead. Argument errors exit 2, as argparse does.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from deen import __version__
from deen.embedding import EmbeddingConfig
from deen.errors import DeenError
from deen.models.deen import VARIANTS

#: Commands that later issues fill: name → what they will do and where it is tracked.
PLANNED_COMMANDS = {
    "run": ("match people live across an RGB and an IR camera stream", "issue #4"),
    "bench": ("time backends against PyTorch with accuracy beside speed", "issue #5"),
    "train": ("train DEEN on SYSU-MM01, RegDB, LLCM or your own data", "issue #3"),
    "eval": ("evaluate a model by the SYSU-MM01 / RegDB / LLCM protocols", "issue #3"),
}
PLANNED_ENGINES = {"trt": "issue #7", "triton": "issue #7"}


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


def _embedding_config(args: argparse.Namespace) -> EmbeddingConfig:
    return EmbeddingConfig(flip=args.flip, a=args.a)


def _cmd_export(args: argparse.Namespace) -> int:
    if args.engine in PLANNED_ENGINES:
        print(f"deen export: --engine {args.engine} is not available yet "
              f"({PLANNED_ENGINES[args.engine]}); use --engine onnx", file=sys.stderr)
        return 2
    from deen.export.onnx_export import export_onnx
    from deen.models.checkpoint import load_checkpoint

    loaded = load_checkpoint(args.checkpoint, variant=args.variant)
    print(f"loaded {args.checkpoint} ({loaded.source_format} format, DEEN "
          f"{loaded.model.variant.name}); exporting and verifying ...", flush=True)
    result = export_onnx(loaded.model, args.out, config=_embedding_config(args),
                         source=loaded.source, opset=args.opset)
    print(f"wrote {result.model_path} and {result.manifest_path}")
    print(f"verified: {result.verification.summary()}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from deen.demo import run_demo

    return run_demo(args.checkpoint, args.variant, args.people, args.seed,
                    _embedding_config(args), args.out_dir)


def _planned(name: str) -> Callable[[argparse.Namespace], int]:
    what, where = PLANNED_COMMANDS[name]

    def command(args: argparse.Namespace) -> int:
        print(f"deen {name}: not available yet: will {what} ({where})", file=sys.stderr)
        return 2

    return command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deen", description="DEEN visible-infrared person re-identification toolchain.")
    parser.add_argument("--version", action="version", version=f"deen {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="export, verify and embed generated people; no download needed",
        description="Run the core pipeline on generated visible/infrared people: export to "
                    "ONNX, verify against PyTorch, print a cross-modality similarity matrix "
                    "and a PyTorch vs ONNX Runtime latency line. Without --checkpoint a seeded "
                    "random-initialised DEEN is used (and the demo says so).")
    _add_model_options(demo, checkpoint_required=False)
    demo.add_argument("--people", type=_positive_int, default=4,
                      help="generated identities (default 4)")
    demo.add_argument("--seed", type=int, default=0, help="seed for weights and images")
    demo.add_argument("--out-dir", type=Path, default=None,
                      help="keep the exported model here (default: a temporary folder)")
    _add_embedding_options(demo)
    demo.set_defaults(handler=_cmd_demo)

    export = commands.add_parser(
        "export", help="export a checkpoint to a verified ONNX model",
        description="Export a DEEN checkpoint to ONNX (inputs images N×3×384×144 float32 and "
                    "modality N int64; output the N×6D embedding), verify it against PyTorch "
                    "with ONNX Runtime, and write FILE.onnx plus FILE.onnx.json (manifest). "
                    "Nothing is written if verification fails.")
    export.add_argument("--engine", choices=["onnx", *PLANNED_ENGINES], default="onnx")
    _add_model_options(export, checkpoint_required=True)
    export.add_argument("--out", type=Path, required=True, metavar="FILE.onnx")
    export.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    _add_embedding_options(export)
    export.set_defaults(handler=_cmd_export)

    for name, (what, where) in PLANNED_COMMANDS.items():
        planned = commands.add_parser(name, help=f"{what} (not yet: {where})")
        planned.set_defaults(handler=_planned(name))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and args.command not in PLANNED_COMMANDS:  # planned ones take anything
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    command = f"deen {args.command}"
    try:
        return args.handler(args)
    except DeenError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"{command}: error: {exc}", file=sys.stderr)
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
        argv = sys.argv[1:]
        # Global options may come first: `deen-export --debug --checkpoint …`.
        globals_ = [a for a in argv if a == "--debug"]
        rest = [a for a in argv if a != "--debug"]
        return main([*globals_, command, *rest])

    return entry


export_main = _alias("export")
run_main = _alias("run")
bench_main = _alias("bench")
train_main = _alias("train")
eval_main = _alias("eval")

if __name__ == "__main__":
    sys.exit(main())
