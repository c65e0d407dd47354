"""The benchmark model of the live runtime: a DEEN that re-identifies generated people.

See deen/train/generated_model.py for the recipe and the cache (DEEN_LIVE_MODEL_CACHE,
default ~/.cache/deen/live-model; about 60 minutes on 2 cores the first time, then reused).

    python benchmarks/live_model.py            # prints the checkpoint's path
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deen.train.generated_model import generated_model


def live_model(log=print) -> Path:
    """The cached checkpoint, trained first if it is not there."""
    return generated_model(log)


if __name__ == "__main__":
    print(live_model(lambda line: print(line, file=sys.stderr)))
