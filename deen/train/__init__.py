"""Training DEEN (datasets, losses, trainer): filled by issue #3."""
