"""Loading the prompts folder: the shipped prompts load and render; bad files say what to fix."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from gen_service.adapters.prompt_files import load_prompt_library
from gen_service.domain.datatypes import REGISTRY
from gen_service.domain.prompts import PromptLibrary
from gen_service.errors import ConfigError

PROMPTS = Path(__file__).resolve().parents[2] / "prompts"
ALL = list(REGISTRY)


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    """A private copy of the shipped prompts folder to break."""
    return Path(shutil.copytree(PROMPTS, tmp_path / "prompts"))


def first_example(name: str) -> dict[str, object]:
    line = (PROMPTS / "examples" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()[0]
    loaded: dict[str, object] = json.loads(line)
    return loaded


def test_shipped_prompts_load_and_render_for_every_type() -> None:
    """The repository's prompts folder loads, and each type renders a full batch prompt."""
    library = load_prompt_library(PROMPTS, ALL)
    for name, spec in REGISTRY.items():
        rng = random.Random(9)
        briefs = spec.sample_contexts(rng, 12)
        prompt = library.render(spec, batch_size=12, contexts=briefs, rng=rng)
        assert "JSON only" in prompt.system
        assert "novelist" in prompt.system
        assert "exactly 12 items, one per brief, in order" in prompt.user
        assert '{"samples": [...]}' in prompt.user
        assert "do not copy their people, situations or openings" in prompt.user
        for number, brief in enumerate(briefs, start=1):
            line = next(x for x in prompt.user.splitlines() if x.startswith(f"Item {number}: "))
            for key, value in brief.facets.items():
                assert f"{key.replace('_', ' ')}: {value}" in line
        shown = [e for e in library.examples_for(name) if e in prompt.user]
        assert 2 <= len(shown) <= 3
        assert "- " in prompt.user and "(string)" in prompt.user  # the field guide
        assert "reviewer" not in prompt.user


def test_shipped_prompts_render_a_refinement() -> None:
    """A judge's recommendations appear in the prompt of every type."""
    library = load_prompt_library(PROMPTS, ALL)
    for spec in REGISTRY.values():
        rng = random.Random(1)
        prompt = library.render(
            spec,
            batch_size=2,
            contexts=spec.sample_contexts(rng, 2),
            rng=rng,
            refinement="Use fewer stock phrases.",
        )
        assert "Use fewer stock phrases." in prompt.user


def test_memo_reasoning_hints_are_in_the_prompts() -> None:
    """The memo's reasoning prompts appear in the irony, emotional and tension templates."""
    library = load_prompt_library(PROMPTS, ALL)
    hints = {
        "dramatic_irony": "Think through the knowledge gap",
        "emotional_authenticity": "Consider realistic human limitations",
        "tension_building": "Analyze what makes",
    }
    for name, hint in hints.items():
        spec = REGISTRY[name]
        rng = random.Random(0)
        prompt = library.render(spec, batch_size=1, contexts=spec.sample_contexts(rng, 1), rng=rng)
        assert hint in prompt.user


def test_loads_only_the_requested_types(prompts: Path) -> None:
    """Files of data types not asked for are not needed."""
    (prompts / "tension_building.j2").unlink()
    library = load_prompt_library(prompts, ["emotional_authenticity"])
    assert library.has("emotional_authenticity") and not library.has("tension_building")


def test_missing_folder_names_the_setting(tmp_path: Path) -> None:
    """A prompts_dir that does not exist says so and points at [service].prompts_dir."""
    with pytest.raises(ConfigError) as info:
        load_prompt_library(tmp_path / "nowhere", ALL)
    assert "nowhere" in str(info.value)
    assert "[service].prompts_dir" in str(info.value)
    assert info.value.key == "service.prompts_dir"


def test_missing_template_names_the_file_and_the_fix(prompts: Path) -> None:
    """A missing <type>.j2 names the file and how to fix it."""
    (prompts / "dramatic_irony.j2").unlink()
    with pytest.raises(ConfigError) as info:
        load_prompt_library(prompts, ALL)
    message = str(info.value)
    assert str(prompts / "dramatic_irony.j2") in message
    assert "create prompts/dramatic_irony.j2 or point [service].prompts_dir" in message


def test_missing_system_template_names_the_file(prompts: Path) -> None:
    """A missing system.j2 names the file."""
    (prompts / "system.j2").unlink()
    with pytest.raises(ConfigError, match=r"create prompts/system\.j2"):
        load_prompt_library(prompts, ALL)


def test_missing_examples_file_names_the_file(prompts: Path) -> None:
    """A missing examples/<type>.jsonl names the file and how to fix it."""
    (prompts / "examples" / "personality_traits.jsonl").unlink()
    with pytest.raises(ConfigError) as info:
        load_prompt_library(prompts, ALL)
    assert "examples/personality_traits.jsonl" in str(info.value)
    assert info.value.path == str(prompts / "examples" / "personality_traits.jsonl")


def test_blank_lines_and_comments_are_ignored(prompts: Path) -> None:
    """Blank lines and // comment lines in a JSONL file are skipped."""
    path = prompts / "examples" / "tension_building.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text(
        "// few-shots for tension\n\n" + "\n\n".join(lines) + "\n   \n// end\n", encoding="utf-8"
    )
    library = load_prompt_library(prompts, ["tension_building"])
    assert len(library.examples_for("tension_building")) == len(lines)


def test_line_that_is_not_json_names_file_and_line(prompts: Path) -> None:
    """A line that is not JSON is reported with its file and line number."""
    path = prompts / "examples" / "relationship_scoring.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines.insert(1, '{"character_name": "Ada",')
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_prompt_library(prompts, ALL)
    assert f"{path}:2 is not valid JSON" in str(info.value)


def test_line_that_is_not_an_object_is_rejected(prompts: Path) -> None:
    """A JSON array on a line is not a sample."""
    path = prompts / "examples" / "relationship_scoring.jsonl"
    path.write_text("[1, 2, 3]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"relationship_scoring\.jsonl:1 is a JSON list"):
        load_prompt_library(prompts, ALL)


def test_example_failing_the_model_names_line_and_field(prompts: Path) -> None:
    """An example with an out-of-range value names the line and the failing field."""
    bad = first_example("emotional_authenticity") | {"emotional_capacity": 14}
    path = prompts / "examples" / "emotional_authenticity.jsonl"
    text = path.read_text(encoding="utf-8")
    path.write_text(text + json.dumps(bad) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_prompt_library(prompts, ALL)
    message = str(info.value)
    assert f"{path}:{len(text.splitlines()) + 1}" in message
    assert "emotional_capacity" in message and "less than or equal to 10" in message


def test_example_with_unknown_field_is_rejected(prompts: Path) -> None:
    """An example with a key the model does not know is rejected."""
    bad = first_example("tension_building") | {"mood": "eerie"}
    path = prompts / "examples" / "tension_building.jsonl"
    path.write_text(json.dumps(bad) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"tension_building\.jsonl:1 .*mood"):
        load_prompt_library(prompts, ALL)


def test_example_failing_the_checks_names_line_and_problem(prompts: Path) -> None:
    """An example that validates but fails a check names the line and the check's problem."""
    bad = first_example("emotional_authenticity") | {
        "support_level": "full",
        "failure_mode": "none",
    }
    path = prompts / "examples" / "emotional_authenticity.jsonl"
    path.write_text(json.dumps(bad) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_prompt_library(prompts, ALL)
    assert f"{path}:1 fails the emotional_authenticity checks" in str(info.value)
    assert "capacity_support_mismatch" in str(info.value)


def test_examples_file_without_examples_is_rejected(prompts: Path) -> None:
    """A JSONL file holding only comments gives no few-shots and is rejected."""
    (prompts / "examples" / "dramatic_irony.jsonl").write_text("// none yet\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="holds no few-shot examples"):
        load_prompt_library(prompts, ALL)


def test_template_with_unknown_variable_fails_at_load(prompts: Path) -> None:
    """A template typo is caught when the folder is loaded, not in the middle of a run."""
    path = prompts / "personality_traits.j2"
    path.write_text(path.read_text(encoding="utf-8") + "{{ batchsize }}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_prompt_library(prompts, ALL)
    assert str(path) in str(info.value) and "batchsize" in str(info.value)


def test_template_syntax_error_names_file_and_line(prompts: Path) -> None:
    """A Jinja syntax error names the file and the line."""
    path = prompts / "system.j2"
    path.write_text("line one\nline two {% if %}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"system\.j2 has a Jinja syntax error on line 2"):
        load_prompt_library(prompts, ALL)


def test_non_utf8_file_is_a_config_error(prompts: Path) -> None:
    """A template that is not UTF-8 text is reported, not a traceback."""
    (prompts / "tension_building.j2").write_bytes(b"caf\xe9 {{ title }}\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_prompt_library(prompts, ALL)


def test_unknown_data_type_is_a_config_error(prompts: Path) -> None:
    """Asking for a data type that does not exist names the known ones."""
    with pytest.raises(ConfigError, match="emotional_authenticity"):
        load_prompt_library(prompts, ["banter"])


def test_static_prefix_is_shared_within_a_rotation() -> None:
    """Two requests of one rotation differ only after the examples: the server's prompt cache
    holds the system text, the instructions and the examples; a new rotation changes them."""
    library = load_prompt_library(PROMPTS, ALL)
    spec = REGISTRY["tension_building"]
    first = library.render(
        spec, batch_size=3, contexts=spec.sample_contexts(random.Random(1), 3),
        rng=random.Random(1), rotation=4,
    )  # fmt: skip
    second = library.render(
        spec, batch_size=5, contexts=spec.sample_contexts(random.Random(2), 5),
        rng=random.Random(2), rotation=4,
    )  # fmt: skip
    assert first.system == second.system
    assert first.example_ids == second.example_ids and first.example_ids
    prefix = first.user[: first.user.index("Briefs, one item each")]
    assert second.user.startswith(prefix)
    assert all(e in prefix for e in library.examples_for(spec.name) if e in first.user)
    others = {
        library.render(
            spec,
            batch_size=1,
            contexts=spec.sample_contexts(random.Random(3), 1),
            rng=random.Random(3),
            rotation=r,
        ).example_ids
        for r in range(5, 15)
    }
    assert len(others) > 1  # the rotation moves on


def test_prompt_records_its_template_version_and_examples() -> None:
    """A prompt carries the templates' hash and the ids of the examples it shows; editing a
    template changes the hash."""
    library = load_prompt_library(PROMPTS, ALL)
    spec = REGISTRY["personality_traits"]
    prompt = library.render(
        spec, batch_size=2, contexts=spec.sample_contexts(random.Random(5), 2),
        rng=random.Random(5), rotation=0, examples=2,
    )  # fmt: skip
    assert len(prompt.template_hash) == 12
    assert len(prompt.example_ids) == 2
    assert all(i.startswith("personality_traits:") for i in prompt.example_ids)
    edited = PromptLibrary(
        {"system": "x {{ title }}", spec.name: "y {{ title }} {{ examples }}"},
        {spec.name: [first_example(spec.name)]},
    )
    assert edited.template_hash(spec.name) != prompt.template_hash


def test_system_prompt_lists_the_stock_phrases_the_checks_reject() -> None:
    """The system prompt names every stock phrase the content check rejects."""
    from gen_service.domain.content import STOCK_PHRASES

    library = load_prompt_library(PROMPTS, ALL)
    spec = REGISTRY["tension_building"]
    prompt = library.render(
        spec, batch_size=1, contexts=spec.sample_contexts(random.Random(5), 1),
        rng=random.Random(5),
    )  # fmt: skip
    for phrase in STOCK_PHRASES:
        assert f'"{phrase}"' in prompt.system
