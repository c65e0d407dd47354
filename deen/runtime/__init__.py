"""Running exported and PyTorch models: embedders now, the live camera-pair pipeline later."""

from deen.runtime.embedder import Embedder, open_embedder

__all__ = ["Embedder", "open_embedder"]
