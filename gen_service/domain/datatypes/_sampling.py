"""The sampling helpers the data types' context samplers share: names, OCEAN profiles in
several shapes, dominant-trait profiles with a chosen lead, stratified rotation and steered
rotation. The samplers draw their material from a
:class:`~gen_service.domain.facets.FacetLibrary` (the files under ``prompts/facets/``).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Literal

from gen_service.domain.datatypes._base import OCEAN_TRAITS, OceanTrait, S, T
from gen_service.domain.facets import FacetFile, FacetLibrary, is_even

FIRST_NAMES = FacetFile("shared/first_names", "first names from many cultures")
SURNAMES = FacetFile("shared/surnames", "surnames from many cultures")
SHARED_FACET_FILES = (FIRST_NAMES, SURNAMES)


def default_facets() -> FacetLibrary:
    """The facet lists shipped with gen-service, read once.

    The one place the domain reaches for files, and only for callers that pass no library
    (tests, the benchmark, a template check): the service passes the library it loaded from
    ``[service].prompts_dir`` with the prompts."""
    from gen_service.adapters.facet_files import shipped_facet_library

    return shipped_facet_library()


def sample_name(rng: random.Random, facets: FacetLibrary | None = None) -> str:
    """A full name drawn from culturally diverse first names and surnames."""
    lib = facets or default_facets()
    return f"{rng.choice(lib.items(FIRST_NAMES.name))} {rng.choice(lib.items(SURNAMES.name))}"


def sample_ocean(rng: random.Random, *, high: OceanTrait | None = None) -> dict[OceanTrait, float]:
    """A Big Five profile; each trait low, middling or high so profiles differ visibly.

    With ``high`` set, that trait is drawn clearly above all the others."""
    profile: dict[OceanTrait, float] = {}
    for trait in OCEAN_TRAITS:
        low, top = rng.choice(((0.05, 0.35), (0.35, 0.65), (0.65, 0.95)))
        profile[trait] = round(rng.uniform(low, top), 2)
    if high is not None:
        others = max(v for t, v in profile.items() if t != high)
        if others > 0.75:
            for trait in OCEAN_TRAITS:
                if trait != high:
                    profile[trait] = round(profile[trait] * 0.75, 2)
            others = max(v for t, v in profile.items() if t != high)
        profile[high] = round(rng.uniform(max(others + 0.1, 0.7), 0.97), 2)
    return profile


# The shapes a character's profile is drawn in, with the words the brief uses for each. Real
# people are not one trait and four middling ones: some are flat, some low across the board,
# some have two strong traits pulling against each other.
OceanShape = Literal["mixed", "flat", "all_low", "all_high", "one_high", "two_high", "one_low"]
OCEAN_SHAPES: Mapping[OceanShape, str] = MappingProxyType(
    {
        "mixed": "mixed: each trait low, middling or high",
        "flat": "flat: no trait stands out",
        "all_low": "low across the board",
        "all_high": "high across the board",
        "one_high": "one trait far above the rest",
        "two_high": "two traits high, the rest low",
        "one_low": "one trait far below the rest",
    }
)


def sample_ocean_shape(rng: random.Random, shape: OceanShape) -> dict[OceanTrait, float]:
    """A Big Five profile of the given ``shape`` (see :data:`OCEAN_SHAPES`), in hundredths."""
    if shape == "mixed":
        return sample_ocean(rng)
    traits = list(OCEAN_TRAITS)
    if shape == "flat":
        centre = rng.randint(20, 80)
        return {t: rng.randint(centre - 6, centre + 6) / 100 for t in traits}
    if shape == "all_low":
        return {t: rng.randint(3, 30) / 100 for t in traits}
    if shape == "all_high":
        return {t: rng.randint(70, 97) / 100 for t in traits}
    picked = rng.sample(traits, 2 if shape == "two_high" else 1)
    if shape == "one_high":
        high, rest = (75, 97), (10, 50)
    elif shape == "two_high":
        high, rest = (70, 97), (5, 45)
    else:  # one_low
        high, rest = (3, 20), (50, 90)
    return {t: rng.randint(*(high if t in picked else rest)) / 100 for t in traits}


# How far the dominant trait of a personality brief leads the next one, in hundredths: from a
# lead a careful reader has to weigh to one that defines the character.
DOMINANT_LEADS: Mapping[str, tuple[int, int]] = MappingProxyType(
    {
        "slight": (2, 5),
        "modest": (6, 12),
        "clear": (13, 25),
        "strong": (26, 45),
        "overwhelming": (46, 80),
    }
)


def sample_dominant_profile(
    rng: random.Random, dominant: OceanTrait, lead: str
) -> dict[OceanTrait, float]:
    """A Big Five profile where ``dominant`` leads the next trait by a margin drawn from the
    ``lead`` band of :data:`DOMINANT_LEADS`; the other four spread from 0 to just under it."""
    margin = rng.randint(*DOMINANT_LEADS[lead])
    second = rng.randint(10, 99 - margin)  # the runner-up, in hundredths
    others = [t for t in OCEAN_TRAITS if t != dominant]
    runner_up = rng.choice(others)
    profile: dict[OceanTrait, float] = {}
    for trait in OCEAN_TRAITS:
        if trait == dominant:
            profile[trait] = (second + margin) / 100
        elif trait == runner_up:
            profile[trait] = second / 100
        else:
            profile[trait] = rng.randint(0, second) / 100
    return profile


def describe_ocean(profile: Mapping[OceanTrait, float]) -> str:
    """``openness 0.72, conscientiousness 0.31, ...`` for an item brief."""
    return ", ".join(f"{trait} {profile[trait]:.2f}" for trait in OCEAN_TRAITS)


def rotation(rng: random.Random, options: Sequence[T], n: int) -> list[T]:
    """``n`` picks that cycle through ``options`` in a shuffled order, so any ``len(options)``
    consecutive items cover every option once: designed spread rather than luck."""
    picks: list[T] = []
    while len(picks) < n:
        cycle = list(options)
        rng.shuffle(cycle)
        picks.extend(cycle)
    return picks[:n]


def steered_rotation(
    rng: random.Random, options: Sequence[S], n: int, weights: Mapping[str, float] | None
) -> list[S]:
    """:func:`rotation` when ``weights`` are absent or even; otherwise ``n`` picks whose counts
    follow the weights as closely as whole numbers allow, in a shuffled order.

    Systematic sampling: each option gets the floor or the ceiling of ``n * weight``, the
    ceiling with the probability of the fraction, so the counts are right on average and never
    far off within a batch (designed spread, steered)."""
    if is_even(weights, options):
        return rotation(rng, options, n)
    assert weights is not None
    order = list(options)
    rng.shuffle(order)  # no option is favoured by its place in the list
    share = [max(0.0, weights.get(option, 0.0)) for option in order]
    total = sum(share)
    if total <= 0:
        return rotation(rng, options, n)
    picks: list[S] = []
    point = rng.random()  # the first of n evenly spaced points on the cumulative weights
    cumulative = 0.0
    for option, weight in zip(order, share, strict=True):
        cumulative += n * weight / total
        while point < cumulative and len(picks) < n:
            picks.append(option)
            point += 1
    while len(picks) < n:  # a rounding error at the far end: give it to the heaviest
        picks.append(max(zip(share, order, strict=True))[1])
    rng.shuffle(picks)
    return picks


def steered_choice(
    rng: random.Random, options: Sequence[S], weights: Mapping[str, float] | None
) -> S:
    """One of ``options``: uniform when ``weights`` are absent or even among them, weighted
    otherwise."""
    if is_even(weights, options):
        return rng.choice(options)
    assert weights is not None
    share = [max(0.0, weights.get(option, 0.0)) for option in options]
    if sum(share) <= 0:
        return rng.choice(options)
    return rng.choices(options, weights=share)[0]
