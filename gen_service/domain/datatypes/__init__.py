"""The five data types, in the order of SPEC §1. Adding a type is one module and one line here."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from gen_service.domain.datatypes import (
    dramatic_irony,
    emotional_authenticity,
    personality_traits,
    relationship_scoring,
    tension_building,
)
from gen_service.domain.datatypes._base import (
    Check,
    DataTypeSpec,
    ItemContext,
    SampleModel,
    placeholder_problems,
)

REGISTRY: Mapping[str, DataTypeSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            emotional_authenticity.SPEC,
            dramatic_irony.SPEC,
            personality_traits.SPEC,
            tension_building.SPEC,
            relationship_scoring.SPEC,
        )
    }
)


def get(name: str) -> DataTypeSpec:
    """The data type called ``name``; KeyError naming the known ones otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"unknown data type {name!r}; known data types: {', '.join(REGISTRY)}"
        ) from None


__all__ = [
    "REGISTRY",
    "Check",
    "DataTypeSpec",
    "ItemContext",
    "SampleModel",
    "get",
    "placeholder_problems",
]
