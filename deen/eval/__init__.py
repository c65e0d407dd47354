"""Evaluation protocols (SYSU-MM01, RegDB, LLCM): filled by issue #3."""
