"""The DEEN network and its checkpoint formats."""

from deen.models.deen import DEEN, VARIANTS, EvalOutput, TrainingOutput, Variant, get_variant

__all__ = ["DEEN", "VARIANTS", "EvalOutput", "TrainingOutput", "Variant", "get_variant"]
