"""DEEN edge toolchain: a faithful DEEN model, verified exports and embedders.

DEEN (Diverse Embedding Expansion Network, Zhang & Wang, CVPR 2023) re-identifies people
across visible (RGB) and infrared cameras.
"""

__version__ = "0.1.0"
