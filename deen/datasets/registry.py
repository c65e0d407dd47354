"""The one table of dataset layouts: name → the module that reads it.

The CLI's ``--dataset``/``--layout`` choices, training's records, evaluation's protocol
settings and ``deen data synth`` all come from here. Adding a layout is one
:class:`Dataset` row plus its module, which provides the :class:`Layout` functions (and,
for ``deen data synth``, a writer in :mod:`deen.datasets.synth`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast

from deen.datasets.common import ImageRecord, ProtocolSplit
from deen.errors import BadValueError

#: A protocol setting (e.g. "all-search", "visible-to-infrared") and the splits whose trials
#: are averaged for it.
Setting = tuple[str, list[ProtocolSplit]]


class Layout(Protocol):
    """What a layout module provides."""

    def training_set(self, root: Path, trial: int = 1) -> list[ImageRecord]:
        """Every training image (``trial``: the train/test split, for datasets that have
        several)."""
        ...

    def test_settings(self, root: Path, trials: int | None = None) -> list[Setting]:
        """Every setting the dataset's protocol reports (both modes or directions), using
        the first ``trials`` trials (default all)."""
        ...


@dataclass(frozen=True)
class Dataset:
    """``module``: the layout module's import path. ``synthetic``: the name of its writer
    in :mod:`deen.datasets.synth` (``None``: ``deen data synth`` cannot write it)."""

    name: str
    module: str
    description: str
    synthetic: str | None = None
    variant: str = "sysu"  # the published DEEN configuration trained on it
    erasing_area: tuple[float, float] = (0.02, 0.4)  # random erasing's area range (reference)

    def layout(self) -> Layout:
        return cast(Layout, importlib.import_module(self.module))


DATASETS: dict[str, Dataset] = {d.name: d for d in (
    Dataset("sysu", "deen.datasets.sysu", "SYSU-MM01 (all-search and indoor-search)",
            synthetic="write_sysu", erasing_area=(0.2, 0.8)),
    Dataset("regdb", "deen.datasets.regdb", "RegDB (both directions, 10 trials)",
            synthetic="write_regdb", variant="regdb"),
    Dataset("llcm", "deen.datasets.llcm", "LLCM (both directions)", synthetic="write_llcm",
            variant="llcm"),
    Dataset("folder", "deen.datasets.folder",
            "your own data: ROOT/{train,test}/{visible,infrared}/<identity>/",
            synthetic="write_folder"),
)}


def names() -> tuple[str, ...]:
    return tuple(DATASETS)


def synthetic_names() -> tuple[str, ...]:
    return tuple(d.name for d in DATASETS.values() if d.synthetic)


def get(name: str) -> Dataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise BadValueError("dataset", name, f"choose one of {', '.join(DATASETS)}") from None


def layout(name: str) -> Layout:
    """The layout module of dataset ``name``."""
    return get(name).layout()
