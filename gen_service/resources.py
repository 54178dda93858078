"""Files that ship inside gen-service: the prompt library and the two documented configs.

A wheel carries them under ``gen_service/_data/`` (hatch ``force-include`` in pyproject.toml);
a source checkout (or an editable install) has them at the top of the repository. Either way
``pip install gen-service`` without the checkout still runs: an unset ``prompts_dir`` means the
shipped prompts, and ``gen-service init`` writes a starter config from the shipped ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

_PACKAGE = Path(__file__).resolve().parent
_DATA = _PACKAGE / "_data"
_CHECKOUT = _PACKAGE.parent

StarterKind = Literal["ollama", "embedded"]

# (name inside _data/, path in a source checkout)
_FILES: dict[str, Path] = {
    "prompts": Path("prompts"),
    "gen-service.toml": Path("systemd") / "gen-service.toml",
    "quickstart.toml": Path("quickstart.toml"),
}


def _shipped(name: str) -> Path:
    packaged = _DATA / name
    if packaged.exists():
        return packaged
    return _CHECKOUT / _FILES[name]


def prompts_dir() -> Path:
    """The prompt library shipped with gen-service (templates and few-shot examples)."""
    return _shipped("prompts")


def starter_config(kind: StarterKind) -> Path:
    """The documented config a starter is made from: the production config for Ollama, the
    quickstart config for the embedded model."""
    return _shipped("gen-service.toml" if kind == "ollama" else "quickstart.toml")
