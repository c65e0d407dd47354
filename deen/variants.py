"""The published DEEN configurations, as plain data (no PyTorch needed to read them).

``sysu``/``llcm``: DEE on 1024 channels, 2048-d embedding; ``regdb``: DEE on 512 channels
after MFA2, no MFA3 or layer4, 1024-d embedding (see :mod:`deen.models.deen`).
"""

from __future__ import annotations

from dataclasses import dataclass

from deen.errors import DeenError


@dataclass(frozen=True)
class Variant:
    """What differs between the published configurations."""

    name: str
    dee_channels: int  # channels of the feature DEE expands
    embedding_dim: int  # D: channels after the last stage
    train_identities: int  # classifier size when trained on the dataset of that name
    last_stage: int  # the ResNet stage DEE feeds, the network's last (3: no MFA3, no layer4)


VARIANTS: dict[str, Variant] = {
    "sysu": Variant("sysu", dee_channels=1024, embedding_dim=2048, train_identities=395,
                    last_stage=4),
    "llcm": Variant("llcm", dee_channels=1024, embedding_dim=2048, train_identities=713,
                    last_stage=4),
    "regdb": Variant("regdb", dee_channels=512, embedding_dim=1024, train_identities=206,
                     last_stage=3),
}
#: The variant of a model made without a checkpoint (a random or a generated-people DEEN).
DEFAULT_VARIANT = "sysu"


def variant_of_reference(dee_channels: int) -> Variant | None:
    """The variant a reference checkpoint holds, by the channels DEE takes (sysu and llcm
    are the same network: sysu, the first)."""
    return next((v for v in VARIANTS.values() if v.dee_channels == dee_channels), None)


def get_variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise DeenError(f"unknown variant {name!r}: choose one of {', '.join(VARIANTS)}")
    return VARIANTS[name]
