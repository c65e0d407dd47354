"""On-disk dataset layouts: SYSU-MM01, RegDB, LLCM and a folder-of-identities layout.

Each layout module lists image records (path, identity, camera, modality) for training and
for its test protocol; nothing here decodes images (the loaders stream them from disk).
"""

from deen.datasets.common import ImageRecord, ProtocolSplit

__all__ = ["ImageRecord", "ProtocolSplit"]
