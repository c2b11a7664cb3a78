"""eightfold: verified implementations of eight recent ML methods for any Hugging Face model."""

from __future__ import annotations

import logging

__version__ = "0.1.0"

# The library never configures handlers; applications (and our CLI) do.
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["__version__"]
