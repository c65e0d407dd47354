"""A DEEN that re-identifies generated people, made on a CPU and cached.

The live benchmarks and ``deen demo`` need a model whose matches mean something without a
download. This one is trained from scratch at 64x24 in three stages: on a synthetic
SYSU-layout dataset of generated people (stage 1), then on crops of generated camera scenes
with 200 people (stage 2), then a second cosine cycle on the same crops from stage 2's
weights with the body learning at the classifier's rate (stage 3), about 60 minutes on 2 CPU
cores. The scenes' seeds are not the benchmarks' (generated scenes seed their people from the
scene seed), so the model never saw the people it is scored on. It is cached, not shipped:
``DEEN_LIVE_MODEL_CACHE`` (default ``~/.cache/deen/live-model``) holds the datasets, the runs
and ``scenes-body/final.pt``; later calls reuse them, and an interrupted stage starts again.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

DATASET_SEED = 1001
INPUT_SIZE = (64, 24)
#: Stage 1: generated people on plain backgrounds (the SYSU-layout synthetic dataset), from
#: scratch; a cosine schedule, since 12 epochs never reach the step schedules' first drop.
RECIPE = ("height=64", "width=24", "identities=4", "per_identity=2", "lr=0.003",
          "body_lr_scale=1.0", "warmup_epochs=0", "schedule=cosine", "erasing_p=0",
          "epochs=12", "steps_per_epoch=60", "val_identities=0", "workers=1", "seed=0")
#: Stage 2: crops of generated camera scenes (the people, sizes, backgrounds, light and
#: noise that `deen run` sees), many identities, from stage 1's weights. The new classifier
#: learns at 10× the body's rate (the reference's ratio): at the body's rate it hardly moves
#: from chance in the steps there are.
SCENE_SEEDS = (1001, 1002, 1003, 1004, 1005)
SCENE_PEOPLE = 40
FINE_TUNE = ("height=64", "width=24", "identities=8", "per_identity=2", "lr=0.03",
             "body_lr_scale=0.1", "warmup_epochs=0", "schedule=cosine", "erasing_p=0",
             "epochs=9", "steps_per_epoch=60", "val_identities=0", "workers=1", "seed=0")
#: Stage 3: stage 2's recipe again for three times the epochs, from stage 2's weights (a
#: warm restart), the body now learning at the classifier's rate. Stage 2 ends with its
#: identity loss still falling; the longer-trained model raises the default detector's
#: multi-camera IDF1 (benchmarks/README.md, "A third training stage"), and the body at the
#: full rate is what tells the generated people apart across the modalities (same README,
#: "The body at the full learning rate").
MORE_EPOCHS = 27
MORE = (f"epochs={MORE_EPOCHS}", "body_lr_scale=1.0")
MINUTES = 60  # all three stages and the scene crops on 2 CPU cores (benchmarks/README.md)
#: Each stage's run folder in the cache, in order; the last one's final.pt is the model. A
#: stage whose recipe changes gets a new folder, so that a cache made before retrains it.
STAGES = ("run", "scenes-run", "scenes-body")


def cache_dir() -> Path:
    return Path(os.environ.get("DEEN_LIVE_MODEL_CACHE",
                               Path.home() / ".cache" / "deen" / "live-model"))


def cached_model() -> Path | None:
    """The cached checkpoint, or None when it has not been trained here yet."""
    final = cache_dir() / STAGES[-1] / "final.pt"
    return final if final.is_file() else None


def write_scene_crops(out: Path, seeds: tuple[int, ...] = SCENE_SEEDS,
                      people: int = SCENE_PEOPLE, every: int = 3, per_person: int = 12,
                      log: Callable[[str], None] = print) -> Path:
    """A folder-layout training set (``out/train/{visible,infrared}/<id>/``) of person crops
    cut from generated scenes by their truth: boxes marked counted, at least 70% visible
    and 50 px tall, up to ``per_person`` per person and camera spread over their time in
    view. Scene seeds are not the benchmarks' (1, 2, 3), so their people are new."""
    import tempfile

    import cv2
    import numpy as np

    from deen.mot import read_boxes
    from deen.scenes import SceneSettings, write_scene

    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for n, seed in enumerate(seeds):
            log(f"scene {n + 1}/{len(seeds)} (seed {seed}) for training crops")
            scene = scratch / f"scene{seed}"
            write_scene(scene, SceneSettings(people=people, seconds=60, min_in_view=4,
                                             max_in_view=8, min_height=60, max_height=250,
                                             one_camera=0.0, seed=seed))
            for stream, video, folder in (("rgb", "visible.mp4", "visible"),
                                          ("ir", "infrared.mp4", "infrared")):
                truth = read_boxes(scene / stream / "gt" / "gt.txt")
                rows = (scene / stream / "gt" / "gt.txt").read_text().splitlines()
                good = {(int(r.split(",")[0]), int(r.split(",")[1])) for r in rows
                        if r.split(",")[6].strip() == "1" and float(r.split(",")[8]) >= 0.7
                        and float(r.split(",")[5]) >= 50}
                chosen: dict[int, list[int]] = {}
                for frame, identity in sorted(good):
                    if frame % every == 0:
                        chosen.setdefault(identity, []).append(frame)
                keep = {(f, i) for i, frames in chosen.items() for f in
                        [frames[k] for k in np.linspace(0, len(frames) - 1,
                                                        min(per_person, len(frames))
                                                        ).round().astype(int)]}
                capture = cv2.VideoCapture(str(scene / video))
                frame = 0
                while True:
                    ok, image = capture.read()
                    if not ok:
                        break
                    frame += 1
                    for identity, (x, y, w, h) in zip(truth.ids.get(frame, []),
                                                      truth.boxes.get(frame, []), strict=True):
                        if (frame, int(identity)) not in keep:
                            continue
                        x1, y1 = max(int(x), 0), max(int(y), 0)
                        crop = image[y1:int(y + h), x1:int(x + w)]
                        person = (n + 1) * 1000 + int(identity)
                        target = scratch / "data" / "train" / folder / f"{person:05d}"
                        target.mkdir(parents=True, exist_ok=True)
                        cv2.imwrite(str(target / f"{frame:05d}.jpg"), crop)
                capture.release()
            shutil.rmtree(scene)
        # Only people both cameras saw train the cross-modality losses.
        train = scratch / "data" / "train"
        for folder in (train / "visible", train / "infrared"):
            other = train / ("infrared" if folder.name == "visible" else "visible")
            for person in list(folder.iterdir()):
                if not (other / person.name).is_dir():
                    shutil.rmtree(person)
        (scratch / "data" / "train").rename(scratch / "train")
        shutil.rmtree(scratch / "data")
        from deen.fileio import publish_dir

        publish_dir(scratch, out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out


def generated_model(log: Callable[[str], None] = print) -> Path:
    """The cached checkpoint, trained first when it is not there (each stage not yet
    done)."""
    cached = cached_model()
    if cached is not None:
        return cached
    from deen.datasets.synth import write_synthetic_dataset
    from deen.train.config import load_config
    from deen.train.trainer import Trainer

    work = cache_dir()
    runs = [work / name for name in STAGES]
    stage1, stage2 = (run / "final.pt" for run in runs[:2])
    if not stage1.is_file():
        people = work / "sysu"
        if not people.is_dir():
            log(f"writing the training people to {people}")
            write_synthetic_dataset(people, "sysu", identities=40, per_camera=4,
                                    size=(128, 64), seed=DATASET_SEED)
        log(f"stage 1: training a DEEN on generated people at {INPUT_SIZE[0]}x"
            f"{INPUT_SIZE[1]} into {runs[0]}")
        config = load_config(None, [*RECIPE, "dataset=sysu", f"root={people}",
                                    f"out={runs[0]}"])
        Trainer(config, force=True).train()
    crops = work / "scene-crops"
    if not crops.is_dir():
        write_scene_crops(crops, log=log)
    scenes = ("dataset=folder", f"root={crops}")
    if not stage2.is_file():
        log(f"stage 2: fine-tuning on crops of generated scenes into {runs[1]}")
        config = load_config(None, [*FINE_TUNE, *scenes, f"out={runs[1]}", f"init={stage1}"])
        Trainer(config, force=True).train()
    log(f"stage 3: {MORE_EPOCHS} more epochs on the scene crops into {runs[2]}")
    config = load_config(None, [*FINE_TUNE, *MORE, *scenes,
                                f"out={runs[2]}", f"init={stage2}"])
    Trainer(config, force=True).train()
    final = cached_model()
    if final is None:
        from deen.errors import DeenError

        raise DeenError(f"{runs[2]}: training ended without final.pt (interrupted?)")
    return final
