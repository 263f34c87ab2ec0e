"""gradci: backward-gradient correctness checks for PyTorch operators."""

__version__ = "0.1.0"
