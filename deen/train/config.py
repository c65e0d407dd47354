"""Training configuration: a TOML file plus ``key=value`` overrides, one dataclass."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomllib

from deen.datasets import registry
from deen.errors import BadValueError, DeenError
from deen.preprocess import check_input_size

SCHEDULES = ("paper", "reference", "cosine")


@dataclass
class TrainConfig:
    dataset: str = "sysu"  # layout of `root`: sysu, regdb, llcm or folder
    root: str = ""
    out: str = "runs/deen"  # run folder: checkpoints, log.csv, config.toml
    variant: str = ""  # network variant; default: regdb for RegDB, else sysu
    regdb_trial: int = 1  # RegDB's train/test split
    height: int = 384
    width: int = 144
    identities: int = 6  # P identities per batch
    per_identity: int = 4  # K images per identity per modality
    epochs: int = 150
    schedule: str = "paper"  # "paper": ×0.1 at 20, ×0.01 at 60, ×0.001 at 120; "reference": 20/80;
    #                         "cosine": half cosine to 0 over the epochs after warm-up
    lr: float = 0.1  # BN-neck and classifier
    body_lr_scale: float = 0.1  # everything else trains at body_lr_scale·lr (reference: 0.1)
    warmup_epochs: int = 10  # linear warm-up (reference: 10)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    erasing_p: float = 0.5  # random-erasing probability (reference: 0.5; 0 for tiny runs)
    lambda_cpm: float = 0.8
    lambda_ort: float = 0.01  # reference code default (paper: 0.1)
    imagenet: str = ""  # torchvision-format ResNet-50 state dict to start from
    init: str = ""  # trained DEEN checkpoint to fine-tune (another input size, other people)
    amp: bool = True  # mixed precision (CUDA only)
    workers: int = 2
    seed: int = 0
    device: str = ""  # default: cuda if available
    checkpoint_every: int = 10  # epochs
    val_identities: int = -1  # held out from training for model selection; -1: 10% (≥ 2)
    eval_every: int = 5  # epochs between validation runs
    steps_per_epoch: int = 0  # cap on batches per epoch (per process); 0: a full epoch
    stop_after_steps: int = 0  # stop (as on an interrupt) after this many steps; 0: never

    def validate(self) -> TrainConfig:
        """``self`` if every setting is usable; else a :class:`BadValueError` naming the
        setting (or a :class:`DeenError` for what is missing or contradictory)."""
        registry.get(self.dataset)  # an unknown name is a ParameterError naming the choices
        if not self.root:
            raise DeenError("no dataset root: set root in the config or on the command line")
        if self.schedule not in SCHEDULES:
            raise BadValueError("schedule", self.schedule, f"choose one of {', '.join(SCHEDULES)}")
        for name in ("identities", "per_identity", "epochs", "height", "width",
                     "checkpoint_every", "eval_every"):
            if not getattr(self, name) >= 1:
                raise BadValueError(name, getattr(self, name), "must be at least 1")
        for name in ("warmup_epochs", "workers", "steps_per_epoch", "stop_after_steps",
                     "body_lr_scale", "weight_decay", "lambda_cpm", "lambda_ort"):
            if not getattr(self, name) >= 0:
                raise BadValueError(name, getattr(self, name), "must not be negative")
        if not self.lr > 0:
            raise BadValueError("lr", self.lr, "must be positive")
        for name in ("erasing_p", "momentum"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise BadValueError(name, getattr(self, name), "must lie between 0 and 1")
        if self.val_identities < -1:
            raise BadValueError("val_identities", self.val_identities,
                                "must be -1 (10% of the identities), 0 or more")
        if not 1 <= self.regdb_trial <= 10:
            raise BadValueError("regdb_trial", self.regdb_trial, "RegDB's trials are 1 to 10")
        check_input_size((self.height, self.width), "height/width")
        if self.init and self.imagenet:
            raise DeenError("init and imagenet both set: a run starts from one of them")
        return self

    @property
    def variant_name(self) -> str:
        return self.variant or registry.get(self.dataset).variant

    def to_toml(self) -> str:
        lines = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            text = str(value).lower() if isinstance(value, bool) else (
                f'"{value}"' if isinstance(value, str) else repr(value))
            lines.append(f"{f.name} = {text}")
        return "\n".join(lines) + "\n"


def _coerce(name: str, text: str, kind: Any) -> Any:
    try:
        if kind is bool or kind == "bool":
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        return {"int": int, "float": float, "str": str}.get(kind, kind)(text)
    except ValueError:
        raise BadValueError("overrides", f"{name}={text}", f"not a valid {kind}") from None


def load_config(path: Path | None, overrides: list[str],
                base: dict[str, Any] | None = None, check: bool = True) -> TrainConfig:
    """Defaults ← ``base`` (e.g. a resumed run's saved settings) ← TOML file ← overrides,
    checked (:meth:`TrainConfig.validate`) unless ``check`` is false. A bad value is named
    where it was set: ``overrides=epochs=0: …`` for an override, ``FILE: epochs=0: …`` for
    the file."""
    values: dict[str, Any] = dict(base or {})
    types = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    if path is not None:
        try:
            values.update(tomllib.loads(Path(path).read_text()))
        except FileNotFoundError:
            raise DeenError(f"{path}: no such config file") from None
        except tomllib.TOMLDecodeError as exc:
            raise DeenError(f"{path}: not valid TOML ({exc})") from None
    unknown = sorted(set(values) - set(types))
    if unknown:
        raise DeenError(f"{path or 'saved config'}: unknown settings: {', '.join(unknown)}")
    python_types = {"int": int, "float": float, "str": str, "bool": bool}
    for name, value in values.items():
        kind = python_types[types[name]]  # type: ignore[index]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            values[name] = float(value)
        elif not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise DeenError(f"{path or 'saved config'}: {name} = {value!r}: not a valid "
                            f"{types[name]}")
    overridden = {}
    for item in overrides:
        name, sep, text = item.partition("=")
        if not sep or name not in types:
            raise BadValueError("overrides", item, "expected KEY=VALUE with KEY one of "
                                f"{', '.join(types)}")
        values[name] = _coerce(name, text, types[name])
        overridden[name] = item
    try:
        config = TrainConfig(**values)
    except TypeError as exc:
        raise DeenError(f"bad configuration: {exc}") from None
    if not check:
        return config
    try:
        return config.validate()
    except BadValueError as exc:
        if exc.parameter in overridden:
            raise BadValueError("overrides", overridden[exc.parameter], exc.problem) from None
        if path is not None:
            raise DeenError(f"{path}: {exc}") from None
        raise

