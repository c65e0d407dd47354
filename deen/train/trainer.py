"""``deen train``: the DEEN recipe (spec §8) on one CPU/GPU or many GPUs via torchrun.

Run folder (``out``): ``config.toml``, ``log.csv`` (one row per step, every loss term),
``last.pt`` (every ``checkpoint_every`` epochs and on interrupt, with everything needed to
resume exactly), ``best.pt`` (best validation mAP) and ``final.pt``. Checkpoints are deen
checkpoints: ``deen export``/``deen eval`` take them directly.

Model selection uses identities held out from the training set (``val_identities``), never
the test set (the reference code selects by test-set rank-1).
"""

from __future__ import annotations

import csv
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from deen.backends.devices import torch_device
from deen.backends.torch_backend import TorchEmbedder
from deen.datasets import registry
from deen.datasets.common import ImageRecord, ProtocolSplit
from deen.embedding import EmbeddingConfig
from deen.errors import DeenError, ParameterError
from deen.eval.evaluate import FeatureCache, evaluate_split
from deen.fileio import check_output
from deen.modality import Modality
from deen.models.checkpoint import (
    load_imagenet_resnet50,
    load_initial_weights,
    read_checkpoint_file,
    save_checkpoint,
)
from deen.models.deen import DEEN
from deen.progress import Progress
from deen.train.config import TrainConfig
from deen.train.data import Augmentation, CrossModalitySampler, TrainImages, collate
from deen.train.losses import DEENLoss, LossWeights

LOSS_TERMS = ("id", "tri", "cpm", "ort", "total")


def lr_factor(schedule: str, epoch: int, warmup_epochs: int = 10, epochs: int = 150) -> float:
    """Warm-up over epochs 0–9 ((e+1)/10), then the named schedule: the reference's steps
    (spec §8), or ``cosine``, a half cosine from 1 towards 0 over the remaining epochs (short
    runs, which end long before the steps' first drop, still end at a small rate)."""
    if epoch < warmup_epochs:
        return (epoch + 1) / warmup_epochs
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * (epoch - warmup_epochs)
                                   / max(epochs - warmup_epochs, 1)))
    steps = {"paper": ((20, 0.1), (60, 0.01), (120, 0.001)),
             "reference": ((20, 0.1), (80, 0.01))}[schedule]
    factor = 1.0
    for start, value in steps:
        if epoch >= start:
            factor = value
    return factor


def training_records(config: TrainConfig) -> list[ImageRecord]:
    return registry.layout(config.dataset).training_set(Path(config.root), config.regdb_trial)


def split_validation(records: list[ImageRecord], count: int,
                     seed: int) -> tuple[list[ImageRecord], ProtocolSplit | None]:
    """Hold out ``count`` identities (−1: 10%, at least 2) as infrared→visible validation."""
    ids = sorted({r.identity for r in records})
    count = max(2, len(ids) // 10) if count < 0 else count
    if count == 0:
        return records, None
    if count > len(ids) - 2:
        raise DeenError(f"val_identities={count} leaves too few of {len(ids)} identities to train")
    held = set(np.random.default_rng(seed).choice(ids, count, replace=False).tolist())
    val = [r for r in records if r.identity in held]
    query = [r for r in val if r.modality == Modality.INFRARED]
    gallery = [r for r in val if r.modality == Modality.VISIBLE]
    split = ProtocolSplit("validation", query, [gallery], "none", False)
    return [r for r in records if r.identity not in held], split


def read_resume_state(path: Path) -> dict[str, Any]:
    """A checkpoint written with training state (``last.pt``), read once."""
    payload = read_checkpoint_file(path)
    if not isinstance(payload, dict) or "training" not in payload:
        raise DeenError(f"{path}: not a resumable training checkpoint (no training state)")
    return payload


def _to_stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _to_stdout(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@contextmanager
def interrupt_flag(log: Callable[[str], None]) -> Iterator[dict[str, bool]]:
    """SIGINT/SIGTERM set a flag; the loop saves a resumable checkpoint and stops. While a
    step computes its forward and backward passes (``flag["abortable"]``), the signal
    abandons that step at once: the weights and optimiser state are still those of the last
    completed step, which is what ``last.pt`` records, so a long step never delays the stop
    (a resumed run repeats the abandoned step)."""
    flag = {"stop": False, "abortable": False}
    owner = os.getpid()

    def handler(signum: int, frame: object) -> None:
        # Ctrl-C in a terminal signals the whole process group: the data loader's worker
        # processes (forked with this handler) ignore it; the loop stops and ends them.
        if os.getpid() != owner:
            return
        first = not flag["stop"]
        flag["stop"] = True
        if first and int(os.environ.get("RANK", 0)) == 0:
            log("\nstopping: saving last.pt ...")
        if flag["abortable"]:  # forward/backward: drop the step, keep the last one done
            flag["abortable"] = False
            raise KeyboardInterrupt

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


#: What a run writes into its folder (and ``force`` deletes before a new run).
RUN_FILES = ("config.toml", "log.csv", "last.pt", "best.pt", "final.pt")


def _claim_run_folder(out: Path, force: bool) -> None:
    """Refuse a run folder holding an earlier run (suggesting ``resume`` only where a
    resumable ``last.pt`` is there), unless ``force``, which deletes that run's files."""
    earlier = [name for name in RUN_FILES if (out / name).is_file()] if out.is_dir() else []
    if earlier and not force:
        if "last.pt" in earlier:
            hint = f"continue it with {{resume}} {out / 'last.pt'}, or replace it with {{force}}"
        else:
            saved = ", ".join(n for n in earlier if n.endswith(".pt")) or "none"
            hint = (f"its checkpoints ({saved}) are not resumable; choose another run "
                    "folder, or replace it with {force}")
        raise ParameterError("out", out, f"already holds a run: {hint}",
                             mentions=("resume", "force"))
    check_output(out, "out", folder=True, results=RUN_FILES, force=force)


class Trainer:
    def __init__(self, config: TrainConfig,
                 resume: Path | dict[str, Any] | None = None, force: bool = False,
                 log: Callable[[str], None] = _to_stderr,
                 out_line: Callable[[str], None] = _to_stdout) -> None:
        """``resume``: a ``last.pt`` path, or the payload :func:`read_resume_state` read.

        A new run (no ``resume``) refuses a run folder that already holds a run, so that
        two runs never mix their logs and checkpoints; ``force`` deletes that run's files
        first. Messages about the run (what it trains on, a stop) go to ``log``, each
        epoch's line to ``out_line``."""
        self.config = config.validate()
        self.log, self.out_line = log, out_line
        if resume is None:
            _claim_run_folder(Path(config.out), force)
        self.rank = int(os.environ.get("RANK", 0))
        self.world_size = int(os.environ.get("WORLD_SIZE", 1))
        device = torch_device(config.device or None)
        if device == "cuda" and self.world_size > 1:
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        self.device = torch.device(device)
        if self.world_size > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.out = Path(config.out)
        torch.manual_seed(config.seed)

        records = training_records(config)
        records, self.validation = split_validation(records, config.val_identities, config.seed)
        erasing = registry.get(config.dataset).erasing_area
        self.dataset = TrainImages(records, Augmentation(
            config.height, config.width, erasing_p=config.erasing_p, erasing_area=erasing))
        self.sampler = CrossModalitySampler(records, config.identities, config.per_identity,
                                            config.seed, self.rank, self.world_size,
                                            config.steps_per_epoch)
        self.loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=self.sampler, collate_fn=collate,
            num_workers=config.workers, pin_memory=self.device.type == "cuda",
            # Its own generator: the loader must not draw from the global RNG, which dropout
            # uses and a resume restores.
            generator=torch.Generator().manual_seed(config.seed))

        self.model = DEEN(self.dataset.num_classes, config.variant_name).to(self.device)
        if config.imagenet:
            load_imagenet_resnet50(self.model, Path(config.imagenet))
        if config.init:
            load_initial_weights(self.model, Path(config.init))
        head = [p for p in self.model.neck.parameters() if p.requires_grad]
        head_ids = {id(p) for p in head}
        body = [p for p in self.model.parameters() if p.requires_grad and id(p) not in head_ids]
        self.optimizer = torch.optim.SGD(
            [{"params": body, "lr": config.body_lr_scale * config.lr},
             {"params": head, "lr": config.lr}],
            momentum=config.momentum, weight_decay=config.weight_decay, nesterov=True)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda epoch: lr_factor(config.schedule, epoch, config.warmup_epochs,
                                    config.epochs))
        self.criterion = DEENLoss(config.per_identity, LossWeights(
            cpm=config.lambda_cpm, orthogonal=config.lambda_ort))
        self.use_amp = config.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.network: torch.nn.Module = self.model
        if self.world_size > 1:
            self.network = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.epoch, self.step_in_epoch, self.global_step, self.best_map = 0, 0, 0, -1.0
        self.stopped_at: str | None = None  # where an early stop left the run (position())
        if resume is not None:
            self._restore(resume if isinstance(resume, dict) else read_resume_state(resume))

    # -- checkpoints ---------------------------------------------------------------------
    def _metadata(self) -> dict[str, object]:
        return {"input_size": [self.config.height, self.config.width],
                "dataset": self.config.dataset, "epoch": self.epoch,
                "num_classes": self.dataset.num_classes, "best_val_mAP": self.best_map}

    def save(self, name: str, with_training_state: bool = True) -> Path:
        path = self.out / name
        training = None
        if with_training_state:
            training = {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
                "global_step": self.global_step, "best_map": self.best_map,
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "config": asdict(self.config),
            }
        save_checkpoint(self.model, path, self._metadata(), training)
        return path

    def _restore(self, payload: dict[str, Any]) -> None:
        state = payload["training"]
        self.model.load_state_dict(payload["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step_in_epoch = state["epoch"], state["step_in_epoch"]
        self.global_step, self.best_map = state["global_step"], state["best_map"]
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])

    # -- loop ----------------------------------------------------------------------------
    def validate(self) -> float:
        if self.validation is None:
            return float("nan")
        embedder = TorchEmbedder(self.model, EmbeddingConfig(), str(self.device),
                                 (self.config.height, self.config.width))
        result = evaluate_split(self.validation, FeatureCache(embedder))
        self.model.train()
        return result.trials[0].mAP

    def _log_writer(self) -> tuple[object, csv.writer]:
        path = self.out / "log.csv"
        new = not path.exists()
        handle = open(path, "a", newline="")  # noqa: SIM115 (kept open for the run)
        writer = csv.writer(handle)
        if new:
            writer.writerow(["epoch", "step", "global_step", "lr", *LOSS_TERMS])
        return handle, writer

    def summary(self) -> str:
        """What this run trains on, printed before the first step."""
        records = self.dataset.records
        visible = sum(r.modality == Modality.VISIBLE for r in records)
        people = len({r.identity for r in records})
        return (f"training DEEN {self.model.variant.name} on {len(records)} images of "
                f"{people} identities ({visible} visible, {len(records) - visible} infrared) "
                f"from {self.config.root}, at {self.config.height}x{self.config.width} on "
                f"{self.device}: {self.config.epochs} epochs of {len(self.sampler)} steps "
                f"(batch {self.config.identities} identities x {self.config.per_identity} "
                f"images x 2 modalities); run folder {self.out}")

    def train(self) -> Path:
        """Run to the last epoch (or an interrupt); returns the checkpoint written last."""
        lead = self.rank == 0
        if lead:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.toml").write_text(self.config.to_toml())
            handle, writer = self._log_writer()
        self.model.train()
        last = self.out / "last.pt"
        if lead:
            self.log(self.summary())
        with interrupt_flag(self.log) as flag:
            while self.epoch < self.config.epochs:
                if flag["stop"]:  # came between epochs (while validating or saving)
                    return self._stop(None, handle) if lead else last
                self.sampler.set_epoch(self.epoch, self.step_in_epoch)
                sums = dict.fromkeys(LOSS_TERMS, 0.0)
                steps, started = 0, time.perf_counter()
                progress = Progress(f"epoch {self.epoch + 1}/{self.config.epochs}",
                                    len(self.sampler), "steps") if lead else None
                if progress is not None:
                    progress.__enter__()
                for images, labels, modality in self.loader:
                    if flag["stop"]:  # came while the batch loaded: no step after it
                        return self._stop(progress, handle) if lead else last
                    try:
                        terms = self._step(images, labels, modality, flag)
                    except KeyboardInterrupt:  # abandoned mid-step: save the last done
                        return self._stop(progress, handle) if lead else last
                    self.step_in_epoch += 1
                    self.global_step += 1
                    steps += 1
                    for k in LOSS_TERMS:
                        sums[k] += terms[k]
                    if lead:
                        writer.writerow([self.epoch, self.step_in_epoch, self.global_step,
                                         f"{self.optimizer.param_groups[1]['lr']:.6g}",
                                         *(f"{terms[k]:.6f}" for k in LOSS_TERMS)])
                        handle.flush()
                        progress.advance(note=" ".join(f"{k} {terms[k]:.3f}"  # cut from
                                                       for k in ("total", "id", "tri")))  # the end
                    stop_now = self.config.stop_after_steps and \
                        self.global_step >= self.config.stop_after_steps
                    if flag["stop"] or stop_now:
                        return self._stop(progress, handle) if lead else last
                if progress is not None:
                    progress.__exit__(None, None, None)
                self.scheduler.step()
                self.epoch += 1
                self.step_in_epoch = 0
                if lead:
                    means = {k: v / max(steps, 1) for k, v in sums.items()}
                    line = (f"\repoch {self.epoch}/{self.config.epochs} "
                            f"({time.perf_counter() - started:.0f} s): "
                            + " ".join(f"{k} {means[k]:.4f}" for k in LOSS_TERMS))
                    if self.validation is not None and (
                            self.epoch % self.config.eval_every == 0
                            or self.epoch == self.config.epochs):
                        val_map = self.validate()
                        line += f"  val mAP {100 * val_map:.2f}"
                        if val_map > self.best_map:
                            self.best_map = val_map
                            self.save("best.pt", with_training_state=False)
                    self.out_line(line)
                    if self.epoch % self.config.checkpoint_every == 0:
                        last = self.save("last.pt")
            if lead:
                handle.close()
                last = self.save("final.pt", with_training_state=False)
                if self.validation is None or self.best_map < 0:
                    self.save("best.pt", with_training_state=False)
        if self.world_size > 1:
            dist.barrier()
            dist.destroy_process_group()
        return last

    def _stop(self, progress: Progress | None, handle: Any) -> Path:
        """End the run early: close the bar and the log, save a resumable ``last.pt``;
        :attr:`stopped_at` says where, as the bar showed it."""
        if progress is not None:
            progress.__exit__(None, None, None)
        last = self.save("last.pt")
        handle.close()
        self.stopped_at = self.position(in_epoch=progress is not None)
        return last

    def position(self, in_epoch: bool = True) -> str:
        """Where the run is, in the progress bar's words: ``epoch 2/50, step 7/12`` (the
        epoch its bar shows and the steps done in it), or ``after epoch 2/50`` between
        epochs (``in_epoch`` false: no bar of the next epoch yet)."""
        epochs = self.config.epochs
        if not in_epoch and self.epoch > 0:
            return f"after epoch {self.epoch}/{epochs}"
        return f"epoch {self.epoch + 1}/{epochs}, step {self.step_in_epoch}/{len(self.sampler)}"

    def _step(self, images: torch.Tensor, labels: torch.Tensor, modality: torch.Tensor,
              flag: dict[str, bool] | None = None) -> dict[str, float]:
        """One optimisation step. Until the optimiser updates the weights, an interrupt may
        abandon it (``flag["abortable"]``); the update itself is never cut in half."""
        if flag is not None and not flag["stop"]:
            flag["abortable"] = True
        try:
            images, labels = images.to(self.device), labels.to(self.device)
            modality = modality.to(self.device)
            with torch.autocast(self.device.type, enabled=self.use_amp):
                output = self.network(images, modality)
                loss, terms = self.criterion(output, labels)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
        finally:
            if flag is not None:
                flag["abortable"] = False
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return terms

