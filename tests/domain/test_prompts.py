"""Prompt rendering: templates and examples in, system and user prompt out."""

from __future__ import annotations

import random
from typing import Any

import pytest

from gen_service.domain.datatypes import REGISTRY, ItemContext
from gen_service.domain.prompts import Prompt, PromptLibrary, field_guide
from gen_service.errors import ConfigError

SPEC = REGISTRY["tension_building"]

SYSTEM = "You write {{ title }} data. JSON only.\n"
USER = """{{ title }}: {{ description }}
{{ field_guide }}
{% for item in items -%}
Item {{ loop.index }}: {% for key, value in item.items() -%}
{{ key }}={{ value }}{% if not loop.last %}; {% endif %}
{%- endfor %}
{% endfor %}
{%- for example in examples %}
Example {{ loop.index }}:
{{ example }}
{% endfor %}
{%- if refinement %}
Fix: {{ refinement }}
{% endif -%}
Return exactly {{ batch_size }} items.
"""


def example(n: int) -> dict[str, Any]:
    return {"technique": "foreshadowing", "setup": f"setup number {n}", "tension": n / 10}


def library(
    user: str = USER, system: str = SYSTEM, count: int = 4, name: str = SPEC.name
) -> PromptLibrary:
    return PromptLibrary({"system": system, name: user}, {name: [example(n) for n in range(count)]})


def contexts(n: int) -> list[ItemContext]:
    return [ItemContext({"technique": f"tech-{i}", "genre": f"genre-{i}"}, "k") for i in range(n)]


def render(lib: PromptLibrary, n: int = 3, seed: int = 0, **kwargs: Any) -> Prompt:
    return lib.render(SPEC, batch_size=n, contexts=contexts(n), rng=random.Random(seed), **kwargs)


def shown_examples(prompt: Prompt) -> list[int]:
    return [n for n in range(10) if f'"setup number {n}"' in prompt.user]


def test_prompt_holds_batch_size_every_brief_and_two_or_three_examples() -> None:
    """The user prompt names the batch size, numbers every brief and shows 2-3 examples."""
    prompt = render(library(), n=3)
    assert "Return exactly 3 items." in prompt.user
    for i in range(3):
        assert f"Item {i + 1}: technique=tech-{i}; genre=genre-{i}" in prompt.user
    assert "Item 4:" not in prompt.user
    assert 2 <= len(shown_examples(prompt)) <= 3
    assert prompt.system == "You write Tension building data. JSON only.\n"


def test_examples_are_pretty_json() -> None:
    """Each example is rendered as indented JSON, non-ASCII kept as is."""
    lib = PromptLibrary(
        {"system": SYSTEM, SPEC.name: "{% for e in examples %}{{ e }}\n{% endfor %}"},
        {SPEC.name: [{"setup": "Élodie's mitten", "tension": 0.5}]},
    )
    prompt = render(lib)
    assert '{\n  "setup": "Élodie\'s mitten",\n  "tension": 0.5\n}' in prompt.user


def test_example_count_varies_between_two_and_three_with_the_rng() -> None:
    """Over many seeds both two and three examples are picked, never more or fewer."""
    counts = {len(shown_examples(render(library(count=6), seed=seed))) for seed in range(40)}
    assert counts == {2, 3}


def test_all_examples_are_used_when_fewer_than_asked() -> None:
    """With one example in the pool, that one example is shown."""
    for seed in range(10):
        assert shown_examples(render(library(count=1), seed=seed)) == [0]


def test_rendering_is_deterministic_for_a_seed() -> None:
    """The same rng seed gives the same prompt; the example choice follows the rng."""
    lib = library(count=8)
    assert render(lib, seed=3) == render(lib, seed=3)
    assert len({tuple(shown_examples(render(lib, seed=s))) for s in range(20)}) > 3


def test_refinement_block_appears_only_when_given() -> None:
    """A judge's recommendations are rendered when present and the block vanishes otherwise."""
    lib = library()
    assert (
        "Fix: Make the payoff concrete." in render(lib, refinement="Make the payoff concrete.").user
    )
    assert "Fix:" not in render(lib).user
    assert "Fix:" not in render(lib, refinement="   ").user


def test_field_guide_lists_fields_with_enums_and_bounds() -> None:
    """The field guide names each field with its enum values or numeric bounds."""
    prompt = render(library())
    assert "- technique (one of incomplete_revelation | contradictory_behavior" in prompt.user
    assert "- tension (number 0 to 1)" in prompt.user
    guide = field_guide(REGISTRY["relationship_scoring"].model.model_json_schema())
    assert "- factors (list of 1 to 6 objects)" in guide
    assert "  - effect (one of strengthens | damages | mixed)" in guide
    ocean = field_guide(REGISTRY["emotional_authenticity"].model.model_json_schema())
    assert "each number 0 to 1" in ocean
    assert "- emotional_capacity (integer 1 to 10)" in ocean


def test_unknown_variable_fails_clearly() -> None:
    """A template using an undefined variable raises ConfigError naming template and variable."""
    lib = library(user="Write {{ batch_sise }} items.\n")
    with pytest.raises(ConfigError) as info:
        render(lib)
    message = str(info.value)
    assert "prompts/tension_building.j2" in message
    assert "batch_sise" in message
    assert "batch_size" in message  # the list of variables that do exist
    assert info.value.path == "prompts/tension_building.j2"


def test_unknown_variable_in_system_template_fails_clearly() -> None:
    """The system template is rendered with the same strictness."""
    lib = library(system="{{ role }}")
    with pytest.raises(ConfigError, match=r"prompts/system\.j2.*'role' is undefined"):
        render(lib)


def test_attribute_of_a_variable_that_does_not_exist_fails() -> None:
    """StrictUndefined also catches a missing key inside an item."""
    lib = library(user="{% for item in items %}{{ item.mood }}{% endfor %}")
    with pytest.raises(ConfigError, match="mood"):
        render(lib)


def test_syntax_error_fails_at_construction_with_the_line() -> None:
    """A Jinja syntax error is a ConfigError when the library is built, naming the line."""
    with pytest.raises(ConfigError) as info:
        library(user="line one\n{% for item in items %}\nno endfor\n")
    message = str(info.value)
    assert "prompts/tension_building.j2" in message and "syntax error on line" in message


def test_sources_name_the_real_files_in_errors() -> None:
    """When sources are given, errors name those files."""
    lib = PromptLibrary(
        {"system": SYSTEM, SPEC.name: "{{ nope }}"},
        {SPEC.name: [example(1)]},
        sources={SPEC.name: "/etc/gen-service/prompts/tension_building.j2"},
    )
    with pytest.raises(ConfigError, match=r"/etc/gen-service/prompts/tension_building\.j2"):
        render(lib)


def test_missing_system_template_is_a_config_error() -> None:
    """A library without the system template cannot be built."""
    with pytest.raises(ConfigError, match=r"system\.j2"):
        PromptLibrary({SPEC.name: USER}, {SPEC.name: []})


def test_missing_datatype_template_is_a_config_error() -> None:
    """Rendering a data type with no template says which file to create."""
    lib = library(name="dramatic_irony")
    with pytest.raises(ConfigError, match=r"create prompts/tension_building\.j2"):
        render(lib)
    assert lib.has("dramatic_irony") and not lib.has("tension_building")


def test_context_count_must_match_batch_size() -> None:
    """Asking for 3 items with 2 briefs is a programming error."""
    with pytest.raises(ValueError, match="one each"):
        library().render(SPEC, batch_size=3, contexts=contexts(2), rng=random.Random(0))


def test_check_renders_exercises_every_template() -> None:
    """check_renders finds a template error before the first real batch."""
    good = library()
    good.check_renders([SPEC])
    bad = library(user="{% if refinement %}{{ refinment }}{% endif %}")
    with pytest.raises(ConfigError, match="refinment"):
        bad.check_renders([SPEC])


def test_real_sampler_briefs_render_into_the_prompt() -> None:
    """Every facet of every sampled brief appears in the rendered prompt."""
    for spec in REGISTRY.values():
        lib = PromptLibrary({"system": SYSTEM, spec.name: USER}, {spec.name: [{"a": 1}]})
        rng = random.Random(4)
        briefs = spec.sample_contexts(rng, 5)
        prompt = lib.render(spec, batch_size=5, contexts=briefs, rng=rng)
        for number, brief in enumerate(briefs, start=1):
            assert f"Item {number}: " in prompt.user
            for key, value in brief.facets.items():
                assert f"{key}={value}" in prompt.user
