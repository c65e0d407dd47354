"""The benchmark model of the live runtime: a DEEN that re-identifies generated people.

Trained on a synthetic SYSU-layout dataset of people drawn with another seed than any scene
(`deen data scene` seeds its people from the scene seed; this set uses seed 1001), at
64x24, from scratch, with the recipe of benchmarks/regenerate.sh (about 16 CPU-minutes on 2
cores). The result is cached, not committed: DEEN_LIVE_MODEL_CACHE (default
~/.cache/deen/live-model) holds the dataset, the run and `final.pt`; a second call reuses
them.

    python benchmarks/live_model.py            # prints the checkpoint's path
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

DATASET_SEED = 1001


def cache_dir() -> Path:
    return Path(os.environ.get("DEEN_LIVE_MODEL_CACHE",
                               Path.home() / ".cache" / "deen" / "live-model"))


def live_model(log=print) -> Path:
    """The cached checkpoint, trained first if it is not there."""
    work = cache_dir()
    final = work / "run" / "final.pt"
    if final.is_file():
        return final
    deen = [sys.executable, "-m", "deen"]
    if not (work / "sysu").is_dir():
        log(f"live model: writing the training people to {work / 'sysu'}")
        subprocess.run([*deen, "data", "synth", "--layout", "sysu", "--out", str(work / "sysu"),
                        "--identities", "40", "--per-camera", "4", "--size", "128x64",
                        "--seed", str(DATASET_SEED)], check=True)
    if (work / "run").exists():  # an interrupted run: start it again
        import shutil

        shutil.rmtree(work / "run")
    log("live model: training at 64x24 (about 16 CPU-minutes) ...")
    settings = ["height=64", "width=24", "identities=4", "per_identity=2", "lr=0.003",
                "body_lr_scale=1.0", "warmup_epochs=0", "erasing_p=0", "epochs=16",
                "steps_per_epoch=60", "val_identities=0", "workers=1", "seed=0"]
    subprocess.run([*deen, "train", "--dataset", "sysu", "--root", str(work / "sysu"),
                    "--out", str(work / "run"), *[f"--set={s}" for s in settings]],
                   check=True)
    return final


if __name__ == "__main__":
    print(live_model(lambda line: print(line, file=sys.stderr)))
