"""Training data: image loading, the reference augmentation (spec §8), and the P×K sampler.

Reproducibility: every sample's augmentation draws from its own generator, seeded by
(run seed, epoch, position in the epoch). The same run therefore sees the same pixels
whatever the number of loader workers, and a resumed run sees exactly what the uninterrupted
one would have.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from deen.datasets.common import ImageRecord
from deen.errors import DeenError
from deen.modality import Modality
from deen.preprocess import MEAN_RGB, STD_RGB, load_rgb


@dataclass(frozen=True)
class Augmentation:
    """Resize, pad, random grayscale, random crop, flip, normalise, random erasing.

    The reference pads by 10 pixels at 384×144; at another input size the pad scales with the
    height, so the crop jitters by the same fraction of the image.
    """

    height: int = 384
    width: int = 144
    grayscale_p: float = 0.5
    flip_p: float = 0.5
    erasing_p: float = 0.5
    erasing_area: tuple[float, float] = (0.02, 0.4)  # SYSU-MM01: (0.2, 0.8)
    erasing_aspect: tuple[float, float] = (0.3, 3.3)

    @property
    def pad(self) -> int:
        return max(1, round(10 * self.height / 384))

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> torch.Tensor:
        image = image.resize((self.width, self.height), Image.LANCZOS)
        if rng.random() < self.grayscale_p:
            image = image.convert("L").convert("RGB")
        array = np.pad(np.asarray(image), ((self.pad, self.pad), (self.pad, self.pad), (0, 0)))
        top = int(rng.integers(0, 2 * self.pad + 1))
        left = int(rng.integers(0, 2 * self.pad + 1))
        array = array[top: top + self.height, left: left + self.width]
        if rng.random() < self.flip_p:
            array = array[:, ::-1]
        tensor = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float() / 255
        tensor = (tensor - torch.tensor(MEAN_RGB).view(3, 1, 1)) / torch.tensor(STD_RGB).view(
            3, 1, 1)
        if rng.random() < self.erasing_p:
            self._erase(tensor, rng)
        return tensor

    def _erase(self, tensor: torch.Tensor, rng: np.random.Generator) -> None:
        """Random erasing (Zhong et al.): a box of random area and aspect set to the mean
        colour (0 after normalisation); up to 100 tries to fit one inside the image."""
        area = self.height * self.width
        for _ in range(100):
            target = rng.uniform(*self.erasing_area) * area
            aspect = math.exp(rng.uniform(*np.log(self.erasing_aspect)))
            h, w = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < h < self.height and 0 < w < self.width:
                y = int(rng.integers(0, self.height - h + 1))
                x = int(rng.integers(0, self.width - w + 1))
                tensor[:, y: y + h, x: x + w] = 0.0
                return


class TrainImages(torch.utils.data.Dataset):
    """Streams training images from disk; items are addressed as (index, sample seed)."""

    def __init__(self, records: Sequence[ImageRecord], augmentation: Augmentation) -> None:
        self.records = list(records)
        self.augmentation = augmentation
        ids = sorted({r.identity for r in self.records})
        self.label_of = {identity: label for label, identity in enumerate(ids)}

    @property
    def num_classes(self) -> int:
        return len(self.label_of)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int, int]:
        index, seed = item
        record = self.records[index]
        image = self.augmentation(load_rgb(record.path), np.random.default_rng(seed))
        return image, self.label_of[record.identity], int(record.modality)


class CrossModalitySampler(torch.utils.data.Sampler):
    """Batches of P identities × K images per modality: [visible P·K; infrared P·K], each
    identity's K images consecutive, the same identity order in both halves (spec §8).

    An epoch has ⌈max(#visible, #infrared) / (P·K)⌉ batches (as the reference draws that many
    samples per epoch); identities are drawn without replacement within a batch and images
    with replacement when an identity has fewer than K. With ``world_size`` > 1, rank r
    takes batches r, r + world, … (wrapping around so that every rank runs the same number of
    steps, which DistributedDataParallel requires).
    """

    def __init__(self, records: Sequence[ImageRecord], identities: int, per_identity: int,
                 seed: int, rank: int = 0, world_size: int = 1, max_batches: int = 0) -> None:
        by_modality: dict[Modality, dict[int, list[int]]] = {m: {} for m in Modality}
        for index, record in enumerate(records):
            by_modality[record.modality].setdefault(record.identity, []).append(index)
        shared = sorted(set(by_modality[Modality.VISIBLE]) & set(by_modality[Modality.INFRARED]))
        if len(shared) < identities:
            raise DeenError(f"only {len(shared)} identities have images of both modalities; "
                            f"a batch needs {identities} (lower the identities setting)")
        self.pools = {m: [by_modality[m][i] for i in shared] for m in Modality}
        self.identities, self.per_identity = identities, per_identity
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch, self.skip = 0, 0
        largest = max(sum(map(len, self.pools[m])) for m in Modality)
        self.batches_per_epoch = math.ceil(largest / (identities * per_identity))
        if max_batches:
            self.batches_per_epoch = min(self.batches_per_epoch, max_batches * world_size)

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        """Select the epoch's batches; ``skip_batches`` resumes part-way (rank-local count)."""
        self.epoch, self.skip = epoch, skip_batches

    def _mine(self) -> list[int]:
        per_rank = math.ceil(self.batches_per_epoch / self.world_size)
        return [(self.rank + i * self.world_size) % self.batches_per_epoch
                for i in range(per_rank)]

    def __len__(self) -> int:
        return len(self._mine()) - self.skip

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        batches = []
        for _ in range(self.batches_per_epoch):
            chosen = rng.choice(len(self.pools[Modality.VISIBLE]), self.identities,
                                replace=False)
            indices = []
            for modality in Modality:
                for c in chosen:
                    pool = self.pools[modality][c]
                    indices += rng.choice(pool, self.per_identity,
                                          replace=len(pool) < self.per_identity).tolist()
            batches.append(indices)
        for batch in self._mine()[self.skip:]:
            seeds = np.random.SeedSequence([self.seed, self.epoch, batch]).generate_state(
                len(batches[batch]))
            yield [(index, int(seed)) for index, seed in zip(batches[batch], seeds, strict=True)]


def collate(items: list[tuple[torch.Tensor, int, int]]) -> tuple[torch.Tensor, ...]:
    images, labels, modality = zip(*items, strict=True)
    return torch.stack(images), torch.tensor(labels), torch.tensor(modality)
