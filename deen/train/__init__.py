"""Training DEEN with the reference recipe (spec §8), for ``deen train``.

- :mod:`deen.train.config`: the settings (a TOML file plus ``--set key=value``), one
  dataclass with every key and its default;
- :mod:`deen.train.data`: image loading, the reference augmentation and the P×K
  cross-modality sampler;
- :mod:`deen.train.losses`: identity, batch-hard triplet, CPM and orthogonality losses;
- :mod:`deen.train.trainer`: the training loop on one CPU/GPU or many GPUs (torchrun),
  checkpoints, resume and model selection on held-out identities.
"""
