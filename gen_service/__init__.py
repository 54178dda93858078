"""gen-service: turn local LLMs into a steady stream of checked, structured training data."""

from __future__ import annotations

__version__ = "0.1.0"
