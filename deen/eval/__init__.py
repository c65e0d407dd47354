"""Evaluation: the SYSU-MM01, RegDB and LLCM protocols and their metrics."""
