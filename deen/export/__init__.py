"""Exports of DEEN to deployable formats, each verified against PyTorch."""
