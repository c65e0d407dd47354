"""The two camera modalities and how they are encoded everywhere (tensors, ONNX, manifests)."""

from __future__ import annotations

from enum import IntEnum

from deen.errors import DeenError


class Modality(IntEnum):
    """Integer codes of the ``modality`` input: one per image, selecting the stem."""

    VISIBLE = 0
    INFRARED = 1


_ALIASES = {
    "visible": Modality.VISIBLE,
    "vis": Modality.VISIBLE,
    "rgb": Modality.VISIBLE,
    "0": Modality.VISIBLE,
    "infrared": Modality.INFRARED,
    "ir": Modality.INFRARED,
    "thermal": Modality.INFRARED,
    "nir": Modality.INFRARED,
    "1": Modality.INFRARED,
}


def parse_modality(value: str | int | Modality) -> Modality:
    """Accept 0/1, a Modality, or a name such as ``visible``, ``rgb``, ``ir``, ``thermal``."""
    if isinstance(value, Modality):
        return value
    key = str(value).strip().lower()
    if key not in _ALIASES:
        raise DeenError(f"unknown modality {value!r}: use visible (0) or infrared (1)")
    return _ALIASES[key]
