"""A DEEN that re-identifies generated people, made on a CPU and cached.

The live benchmarks and ``deen demo`` need a model whose matches mean something without a
download. This one is trained from scratch on a synthetic SYSU-layout dataset of people
drawn with their own seed (``DATASET_SEED``: generated scenes seed their people from the
scene seed, so the model never saw the people it is scored on), at 64x24, in about 16
minutes on 2 CPU cores. It is cached, not shipped: ``DEEN_LIVE_MODEL_CACHE`` (default
``~/.cache/deen/live-model``) holds the dataset, the run and ``run/final.pt``; later calls
reuse them, and an interrupted run starts again.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

DATASET_SEED = 1001
INPUT_SIZE = (64, 24)
RECIPE = ("height=64", "width=24", "identities=4", "per_identity=2", "lr=0.003",
          "body_lr_scale=1.0", "warmup_epochs=0", "erasing_p=0", "epochs=16",
          "steps_per_epoch=60", "val_identities=0", "workers=1", "seed=0")
MINUTES = 16  # on 2 cores of an AVX2 EPYC, nothing else running


def cache_dir() -> Path:
    return Path(os.environ.get("DEEN_LIVE_MODEL_CACHE",
                               Path.home() / ".cache" / "deen" / "live-model"))


def cached_model() -> Path | None:
    """The cached checkpoint, or None when it has not been trained here yet."""
    final = cache_dir() / "run" / "final.pt"
    return final if final.is_file() else None


def generated_model(log: Callable[[str], None] = print) -> Path:
    """The cached checkpoint, trained first when it is not there."""
    cached = cached_model()
    if cached is not None:
        return cached
    from deen.datasets.synth import write_synthetic_dataset
    from deen.train.config import load_config
    from deen.train.trainer import Trainer

    work = cache_dir()
    people = work / "sysu"
    if not people.is_dir():
        log(f"writing the training people to {people}")
        write_synthetic_dataset(people, "sysu", identities=40, per_camera=4, size=(128, 64),
                                seed=DATASET_SEED)
    run = work / "run"
    if run.exists():  # an interrupted run: start it again
        shutil.rmtree(run)
    log(f"training a DEEN on generated people at {INPUT_SIZE[0]}x{INPUT_SIZE[1]} "
        f"(about {MINUTES} minutes on 2 CPU cores) into {run}")
    config = load_config(None, [*RECIPE, "dataset=sysu", f"root={people}", f"out={run}"])
    Trainer(config).train()
    final = cached_model()
    if final is None:
        from deen.errors import DeenError

        raise DeenError(f"{run}: training ended without final.pt (interrupted?)")
    return final
