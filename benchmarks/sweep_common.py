"""What the int8 sweep scripts share: their model/dataset arguments and one-line errors."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deen.datasets.common import ProtocolSplit
from deen.errors import DeenError
from deen.eval.evaluate import protocol_settings
from deen.models.checkpoint import LoadedCheckpoint, load_checkpoint


def input_size_arg(text: str) -> tuple[int, int]:
    """argparse type of a ``HEIGHTxWIDTH`` model input size."""
    from deen.errors import ParameterError
    from deen.preprocess import parse_input_size

    try:
        return parse_input_size(text)
    except ParameterError as exc:
        raise argparse.ArgumentTypeError(f"{text}: {exc.problem}") from None


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--checkpoint``, ``--dataset``, ``--root`` (accuracy on its test protocol) and
    ``--calib`` (calibration crops as for ``deen export``)."""
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--dataset", required=True, choices=["sysu", "regdb", "llcm", "folder"])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--calib", type=Path, default=None,
                        help="calibration crops as for deen export (default: generated people)")


def load_model_and_split(args: argparse.Namespace) -> tuple[LoadedCheckpoint, ProtocolSplit]:
    """The checkpoint in eval mode and the first test split of the dataset's protocol."""
    loaded = load_checkpoint(args.checkpoint)
    loaded.model.eval()
    (_, (split, *_)), *_ = protocol_settings(args.dataset, args.root)
    return loaded, split


def run(sweep: Callable[[], int]) -> int:
    """``sweep()``, with a bad checkpoint, dataset root or calibration folder as one line."""
    try:
        return sweep()
    except DeenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
