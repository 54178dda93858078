"""The judge's four quality dimensions, in report order (their own module so the status path
can name them without importing the judge's prompt machinery: Jinja2, pydantic)."""

from __future__ import annotations

DIMENSIONS = ("authenticity", "consistency", "complexity", "usability")
