"""Checkpoint I/O: the reference code's files, this project's own, and ImageNet ResNet-50.

Every file is read with ``torch.load(weights_only=True)``, which rebuilds tensors and plain
containers but never runs pickled code. The reference code stores numpy scalars and arrays
as metadata (``mAP``, ``cmc``), so the few numpy constructors that rebuild plain arrays are
allowed as well; anything else in the pickle is refused.

Reference checkpoints (``{'net': state_dict, 'epoch': …, 'mAP': …}``, spec §7) carry three
ResNet-50s of which only parts are used; the unused families are ignored by name, every
other tensor must map onto the model with the right shape.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deen import __version__
from deen.errors import DeenError
from deen.fileio import atomic_path, sha256_file
from deen.models.deen import DEEN, VARIANTS, get_variant
from deen.preprocess import DEFAULT_INPUT_SIZE
from deen.variants import variant_of_reference

OWN_FORMAT = "deen-checkpoint"
OWN_FORMAT_VERSION = 1

def _name_prefixes() -> list[tuple[str, str]]:
    """(reference prefix, this project's prefix) for every used tensor family (spec §7).

    One table serves both directions; no prefix of one column is a prefix of another
    entry's name in a way that matters, because longer prefixes come first.
    """
    pairs = [
        ("visible_module.visible.conv1.", "stems.visible.conv."),
        ("visible_module.visible.bn1.", "stems.visible.bn."),
        ("thermal_module.thermal.conv1.", "stems.infrared.conv."),
        ("thermal_module.thermal.bn1.", "stems.infrared.bn."),
    ]
    pairs += [(f"base_resnet.base.layer{n}.", f"layer{n}.") for n in (1, 2, 3, 4)]
    for n in (1, 2, 3):
        for block in ("CNL", "PNL"):
            pairs.append((f"MFA{n}.{block}.W.", f"mfa{n}.{block.lower()}.out."))
            pairs.append((f"MFA{n}.{block}.", f"mfa{n}.{block.lower()}."))
    for branch in (1, 2):
        pairs += [(f"DEE.FC{branch}{d}.", f"dee.branch{branch}.dilated.{d - 1}.")
                  for d in (1, 2, 3)]
        pairs.append((f"DEE.FC{branch}.", f"dee.branch{branch}.expand."))
    pairs += [("bottleneck.", "neck.bn."), ("classifier.", "neck.classifier.")]
    return pairs


_NAME_PREFIXES = _name_prefixes()


def _rename(name: str, source: int) -> str | None:
    for pair in _NAME_PREFIXES:
        if name.startswith(pair[source]):
            return pair[1 - source] + name[len(pair[source]):]
    return None


def reference_to_model_name(name: str) -> str | None:
    """This project's name for a reference tensor name, or None if it has none."""
    return _rename(name, source=0)


def model_to_reference_name(name: str) -> str:
    """The name a tensor of this project has in a reference checkpoint."""
    return _rename(name, source=1) or name


#: Tensors the reference model carries but never reads (spec §7): the per-modality
#: ResNets' stages, the shared ResNet's own stem and fc, and (regdb) its layer4.
_REFERENCE_UNUSED = re.compile(
    r"^(visible_module\.visible|thermal_module\.thermal)\.(layer\d|fc)\."
    r"|^base_resnet\.base\.(conv1|bn1|fc)\."
)
#: The reference builds layer4 even for a network that ends at layer3 (regdb).
_REFERENCE_UNUSED_LAYER4 = re.compile(r"^base_resnet\.base\.layer4\.")


@dataclass(frozen=True)
class SourceInfo:
    """Where a model's weights came from, as recorded in export manifests."""

    kind: str  # "reference" (the authors' code), "deen" (this project), "random-init"
    checkpoint: str | None = None
    sha256: str | None = None
    seed: int | None = None


@dataclass
class LoadedCheckpoint:
    """A model built from a checkpoint, with what was learned about the file."""

    model: DEEN
    path: Path
    source_format: str  # "reference" or "deen"
    sha256: str
    ignored: list[str] = field(default_factory=list)  # unused reference tensors
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def input_size(self) -> tuple[int, int]:
        """(H, W) the model was trained at: recorded by deen training, else the papers'."""
        size = self.metadata.get("input_size")
        return (int(size[0]), int(size[1])) if size else DEFAULT_INPUT_SIZE

    @property
    def source(self) -> SourceInfo:
        return SourceInfo(self.source_format, str(self.path), self.sha256)


def _numpy_safe_globals() -> list[Any]:
    """The numpy constructors a plain ndarray or numpy scalar pickle needs, under the
    module names both numpy 1.x (``numpy.core``) and 2.x (``numpy._core``) write."""
    multiarray = np._core.multiarray
    allowed: list[Any] = [np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar]
    allowed += [(multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
                (multiarray.scalar, "numpy.core.multiarray.scalar")]
    allowed += [type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDG"]
    return allowed


def read_checkpoint_file(path: str | os.PathLike[str]) -> Any:
    """``torch.load`` without executing pickled code; errors become one-line DeenErrors."""
    path = Path(path)
    if not path.is_file():
        raise DeenError(f"{path}: no such checkpoint file")
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for bad files; the message is the point
        text = str(exc)
        # Only a disallowed global means pickled code; other unpickler complaints (e.g.
        # "Unsupported operand" for an image file) mean the file is not a checkpoint at all.
        match = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        if match:
            raise DeenError(f"{path}: refusing to load: the file holds pickled code "
                            f"({match.group(1)}); only tensors and plain metadata are "
                            "accepted") from exc
        # The unpickler's own words ("105", "Unsupported operand 103") say nothing to a user.
        kind = "a zip archive that is not a checkpoint" if zipfile.is_zipfile(path) else \
            "neither a PyTorch zip archive nor a pickle"
        raise DeenError(f"{path}: not a readable PyTorch checkpoint ({kind}; truncated, or "
                        "another format)") from exc


def _plain_metadata(value: Any) -> Any:
    """numpy metadata (the reference's mAP/cmc) as JSON-friendly Python values."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _detect_reference_variant(state: dict[str, torch.Tensor], path: Path) -> str:
    dee = state.get("DEE.FC11.weight")
    if dee is None:
        raise DeenError(f"{path}: missing tensors: DEE.FC11.weight (not a DEEN checkpoint?)")
    in_channels = dee.shape[1]
    variant = variant_of_reference(in_channels)  # sysu for llcm too: the caller may say llcm
    if variant is None:
        names: dict[int, list[str]] = {}
        for v in VARIANTS.values():
            names.setdefault(v.dee_channels, []).append(v.name)
        expected = " or ".join(f"{c} ({'/'.join(n)})" for c, n in names.items())
        raise DeenError(f"{path}: DEE.FC11.weight has {in_channels} input channels; "
                        f"expected {expected}")
    return variant.name


def _num_classes(state: dict[str, torch.Tensor], key: str, path: Path) -> int:
    weight = state.get(key)
    if weight is None or weight.ndim != 2:
        raise DeenError(f"{path}: missing tensors: {key}")
    return int(weight.shape[0])


def _check_tensors(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor], path: Path,
                   shown: Callable[[str], str] = str) -> None:
    """Every tensor of ``expected`` present in ``state`` with its shape, and nothing else.

    ``shown`` turns this project's names into the names the user's file holds, for messages.
    """
    missing = sorted(shown(k) for k in set(expected) - set(state))
    unexpected = sorted(shown(k) for k in set(state) - set(expected))
    problems = []
    if missing:
        problems.append(f"missing tensors: {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors: {_names(unexpected)}")
    mismatched = [f"{shown(k)} {tuple(state[k].shape)}, expected {tuple(expected[k].shape)}"
                  for k in sorted(set(state) & set(expected))
                  if state[k].shape != expected[k].shape]
    if mismatched:
        problems.append(f"shape mismatch: {_names(mismatched)}")
    if problems:
        raise DeenError(f"{path}: " + "; ".join(problems))


def _names(items: list[str], limit: int = 6) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def _from_reference(
    state: dict[str, torch.Tensor], path: Path, variant: str | None
) -> tuple[DEEN, list[str]]:
    state = {k.removeprefix("module."): v for k, v in state.items()}  # DataParallel saves
    detected = _detect_reference_variant(state, path)
    if variant is not None and VARIANTS[variant].dee_channels != VARIANTS[detected].dee_channels:
        raise DeenError(f"{path}: holds a {detected} model, but variant {variant!r} was asked for")
    model = DEEN(_num_classes(state, "classifier.weight", path), variant or detected)
    ours, ignored, unknown = {}, [], []
    expected = model.state_dict()
    for name, tensor in state.items():
        target = reference_to_model_name(name)
        if target is not None and target in expected:
            ours[target] = tensor
        elif _REFERENCE_UNUSED.match(name) or (
            VARIANTS[detected].last_stage < 4 and _REFERENCE_UNUSED_LAYER4.match(name)
        ):
            ignored.append(name)
        else:
            unknown.append(name)
    if unknown:
        raise DeenError(f"{path}: unexpected tensors: {_names(sorted(unknown))}")
    _check_tensors(expected, ours, path, shown=model_to_reference_name)
    model.load_state_dict(ours)
    return model, ignored


def load_checkpoint(
    path: str | os.PathLike[str], variant: str | None = None
) -> LoadedCheckpoint:
    """Build an eval-mode DEEN from a reference-code or a ``deen`` checkpoint.

    ``variant`` picks ``sysu`` vs ``llcm`` (same tensors); regdb is told apart from the
    tensors. Raises :class:`DeenError` naming the file and what is wrong.
    """
    path = Path(path)
    if variant is not None and variant not in VARIANTS:
        raise DeenError(f"unknown variant {variant!r}: choose one of {', '.join(VARIANTS)}")
    payload = read_checkpoint_file(path)
    if not isinstance(payload, dict):
        raise DeenError(f"{path}: expected a dict of tensors, found {type(payload).__name__}")
    metadata: dict[str, Any] = {}
    ignored: list[str] = []
    if payload.get("format") == OWN_FORMAT:
        if payload.get("format_version") != OWN_FORMAT_VERSION:
            raise DeenError(f"{path}: deen checkpoint format version "
                            f"{payload.get('format_version')!r} is not supported")
        saved_variant = payload.get("variant")
        if saved_variant not in VARIANTS:
            raise DeenError(f"{path}: unknown variant {saved_variant!r} in checkpoint")
        if variant is not None and variant != saved_variant:
            raise DeenError(f"{path}: holds a {saved_variant} model, "
                            f"but variant {variant!r} was asked for")
        state = payload.get("state_dict")
        if not isinstance(state, dict):
            raise DeenError(f"{path}: deen checkpoint has no state_dict")
        model = DEEN(_num_classes(state, "neck.classifier.weight", path), saved_variant)
        _check_tensors(model.state_dict(), state, path)
        model.load_state_dict(state)
        source = "deen"
        metadata = dict(payload.get("metadata", {}))
    else:
        state = payload.get("net", payload)
        if not all(isinstance(v, torch.Tensor) for v in state.values()) or not state:
            raise DeenError(f"{path}: not a DEEN checkpoint (no state dict of tensors under 'net')")
        model, ignored = _from_reference(state, path, variant)
        source = "reference"
        if "net" in payload:
            metadata = {k: _plain_metadata(v) for k, v in payload.items() if k != "net"}
    model.eval()
    return LoadedCheckpoint(model, path, source, sha256_file(path), ignored, metadata)


def save_checkpoint(
    model: DEEN, path: str | os.PathLike[str], metadata: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
) -> None:
    """Write this project's checkpoint format (atomically: temp file, then rename).

    ``training`` (optimizer, scheduler, RNG states, …) makes it resumable by ``deen train``;
    loaders of the model ignore it.
    """
    payload: dict[str, Any] = {
        "format": OWN_FORMAT,
        "format_version": OWN_FORMAT_VERSION,
        "variant": model.variant.name,
        "deen_version": __version__,
        "state_dict": model.state_dict(),
        "metadata": metadata or {},
    }
    if training is not None:
        payload["training"] = training
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_imagenet_resnet50(model: DEEN, path: str | os.PathLike[str]) -> list[str]:
    """Initialise both stems and the shared body from a torchvision-format ResNet-50.

    Returns the names of the model's tensors that were set. ``fc.*`` is ignored; the
    regdb variant ignores ``layer4.*`` (it has no layer4).
    """
    path = Path(path)
    state = read_checkpoint_file(path)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not {"conv1.weight", "layer1.0.conv1.weight"} <= set(state):
        raise DeenError(f"{path}: not a torchvision-format ResNet-50 state dict "
                        "(expected conv1.weight, layer1.0.conv1.weight, …)")
    mapped: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if name.startswith(("conv1.", "bn1.")):
            inner = name.replace("conv1.", "conv.", 1).replace("bn1.", "bn.", 1)
            mapped[f"stems.visible.{inner}"] = tensor
            mapped[f"stems.infrared.{inner}"] = tensor
        elif name.startswith("layer"):
            mapped[name] = tensor
    wanted = {k: v for k, v in model.state_dict().items() if k.startswith(("stems.", "layer"))}
    body = {k: v for k, v in mapped.items() if k in wanted}  # e.g. regdb has no layer4
    _check_tensors(wanted, body, path)
    model.load_state_dict(body, strict=False)
    return sorted(body)


def load_initial_weights(model: DEEN, path: str | os.PathLike[str]) -> list[str]:
    """Start a training run from a trained DEEN (a ``deen`` or reference checkpoint):
    fine-tuning at another input size or on other people.

    Every tensor is taken except the classifier when its identities differ from ``model``'s
    (new people need a new classifier; it keeps its fresh initialisation). The variants must
    match. Returns the names of the tensors that were set.
    """
    path = Path(path)
    loaded = load_checkpoint(path, variant=model.variant.name)
    if loaded.model.variant.name != model.variant.name:
        raise DeenError(f"{path}: holds a {loaded.model.variant.name} model, but this run "
                        f"trains the {model.variant.name} variant")
    state = loaded.model.state_dict()
    classifier = "neck.classifier.weight"
    if state[classifier].shape != model.state_dict()[classifier].shape:
        del state[classifier]
    model.load_state_dict(state, strict=False)
    return sorted(state)


def random_model(variant: str, seed: int) -> tuple[DEEN, SourceInfo]:
    """A seeded, randomly initialised eval-mode DEEN: the embedded default that needs no
    download. Its embeddings carry no identity information."""
    torch.manual_seed(seed)
    model = DEEN(get_variant(variant).train_identities, variant).eval()
    return model, SourceInfo("random-init", seed=seed)
