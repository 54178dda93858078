"""The facet lists on disk: the shipped ones load and are big enough; a broken, unknown or
unreadable file is refused with its path and line; a custom folder overrides file by file."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from gen_service.adapters.facet_files import (
    facet_files,
    load_facet_library,
    shipped_facet_library,
)
from gen_service.adapters.prompt_files import load_prompt_library
from gen_service.domain.content import STOCK_PHRASES
from gen_service.domain.datatypes import REGISTRY
from gen_service.errors import ConfigError

PROMPTS = Path(__file__).resolve().parents[2] / "prompts"
ALL_TYPES = list(REGISTRY)

# The least each shipped list must hold: an order of magnitude more than the code-held lists
# they replaced (45 situations, 12 gap kinds, 15 tension subjects ...).
MINIMUM_SIZES = {
    "emotional_authenticity/situations": 400,
    "emotional_authenticity/other_people": 80,
    "emotional_authenticity/places": 90,
    "emotional_authenticity/capacity_reasons": 120,
    "dramatic_irony/gaps": 180,
    "dramatic_irony/who_knows": 40,
    "dramatic_irony/genres": 40,
    "dramatic_irony/settings": 140,
    "personality_traits/scenarios": 150,
    "personality_traits/listeners": 90,
    "tension_building/subjects": 200,
    "tension_building/genres": 40,
    "relationship_scoring/character_roles": 150,
    "relationship_scoring/relationship_stages": 60,
    "shared/first_names": 200,
    "shared/surnames": 150,
}


def copy_prompts(tmp_path: Path) -> Path:
    return Path(shutil.copytree(PROMPTS, tmp_path / "prompts"))


def test_shipped_lists_load_and_meet_their_sizes() -> None:
    """Every facet file ships, loads without error and holds at least its minimum of lines."""
    library = load_facet_library(PROMPTS)
    sizes = library.sizes()
    assert set(sizes) == {spec.name for spec in facet_files()} == set(MINIMUM_SIZES)
    for name, minimum in MINIMUM_SIZES.items():
        assert sizes[name] >= minimum, f"{name}: {sizes[name]} lines, want {minimum}"


def test_shipped_grouped_lists_fill_every_category() -> None:
    """Situations have at least 25 lines per category, irony truths 15 per gap kind, and
    capacity reasons 35 per band."""
    library = shipped_facet_library()
    for name, least in (
        ("emotional_authenticity/situations", 25),
        ("dramatic_irony/gaps", 15),
        ("emotional_authenticity/capacity_reasons", 35),
        ("personality_traits/scenarios", 10),
    ):
        groups = library.groups(name)
        assert all(len(items) >= least for items in groups.values()), (name, groups.keys())


def test_shipped_lines_are_unique_short_and_free_of_stock_phrases() -> None:
    """No line repeats within a file, none is long, none holds a stock phrase or a ';'."""
    library = shipped_facet_library()
    for name in library.names:
        items = library.items(name)
        assert len({i.casefold() for i in items}) == len(items), name
        for item in items:
            assert len(item) <= 200 and ";" not in item, item
            assert not any(p in item.casefold() for p in STOCK_PHRASES), item


def test_every_facet_file_is_documented_in_the_readme() -> None:
    """prompts/facets/README.md lists each file the service reads, so a writer can find it."""
    readme = (PROMPTS / "facets" / "README.md").read_text(encoding="utf-8")
    for spec in facet_files():
        assert f"`{spec.filename}`" in readme, spec.filename


@pytest.mark.parametrize(
    ("file", "append", "words"),
    [
        ("tension_building/subjects.txt", "a locked drawer\n", "duplicate line"),
        ("dramatic_irony/gaps.txt", "[secrets]\nsomething hidden\n", "unknown category [secrets]"),
        ("personality_traits/scenarios.txt", "[waiting]\n", "appears twice"),
    ],
)
def test_a_broken_file_stops_the_prompt_library_with_path_and_line(
    tmp_path: Path, file: str, append: str, words: str
) -> None:
    """A bad line in a facet file fails load_prompt_library (start-up, SIGHUP) with the file's
    path and the line number of the bad line."""
    prompts = copy_prompts(tmp_path)
    path = prompts / "facets" / file
    lines = path.read_text(encoding="utf-8").count("\n")
    path.write_text(path.read_text(encoding="utf-8") + append, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_prompt_library(prompts, ALL_TYPES)
    assert f"{path}:{lines + 1}: " in str(info.value)
    assert words in str(info.value)
    assert info.value.path == str(path)


def test_an_emptied_file_is_refused(tmp_path: Path) -> None:
    """A facet file with only comments is a ConfigError naming it."""
    prompts = copy_prompts(tmp_path)
    path = prompts / "facets" / "dramatic_irony" / "genres.txt"
    path.write_text("# nothing here yet\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="holds no items") as info:
        load_facet_library(prompts)
    assert str(path) in str(info.value)


def test_an_unknown_facet_file_is_refused(tmp_path: Path) -> None:
    """A .txt file gen-service does not read (a misspelt name) is an error naming it and the
    names it reads in that folder."""
    prompts = copy_prompts(tmp_path)
    stray = prompts / "facets" / "tension_building" / "subject.txt"
    stray.write_text("a locked drawer\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_facet_library(prompts)
    assert str(stray) in str(info.value)
    assert "tension_building/subjects.txt" in str(info.value)


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    """A facet file saved in another encoding is a ConfigError saying to save it as UTF-8."""
    prompts = copy_prompts(tmp_path)
    path = prompts / "facets" / "shared" / "surnames.txt"
    path.write_bytes("Mu\xf1oz\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="UTF-8"):
        load_facet_library(prompts)


def test_a_custom_folder_overrides_one_list_and_keeps_the_rest(tmp_path: Path) -> None:
    """Only the files a custom prompts folder has replace the shipped ones; briefs drawn from
    the loaded library use the override."""
    custom = tmp_path / "mine"
    (custom / "facets" / "relationship_scoring").mkdir(parents=True)
    roles = custom / "facets" / "relationship_scoring" / "character_roles.txt"
    roles.write_text("# ours\na lock-keeper on a quiet canal\n", encoding="utf-8")
    library = load_facet_library(custom)
    shipped = shipped_facet_library()
    assert library.items("relationship_scoring/character_roles") == (
        "a lock-keeper on a quiet canal",
    )
    assert library.items("tension_building/subjects") == shipped.items("tension_building/subjects")
    spec = REGISTRY["relationship_scoring"]
    briefs = spec.sample_contexts(random.Random(1), 5, facets=library)
    assert {b.facets["who_they_are"] for b in briefs} == {"a lock-keeper on a quiet canal"}


def test_a_prompts_folder_without_facets_uses_the_shipped_lists(tmp_path: Path) -> None:
    """An older prompts folder with no facets/ folder still loads, with the shipped lists."""
    prompts = copy_prompts(tmp_path)
    shutil.rmtree(prompts / "facets")
    assert load_facet_library(prompts) == shipped_facet_library()


def test_the_prompt_library_carries_the_facets_it_loaded(tmp_path: Path) -> None:
    """load_prompt_library reads the facet lists of its own folder, for the producers."""
    prompts = copy_prompts(tmp_path)
    listeners = prompts / "facets" / "personality_traits" / "listeners.txt"
    listeners.write_text("a lighthouse keeper's parrot\n", encoding="utf-8")
    library = load_prompt_library(prompts, ALL_TYPES)
    assert library.facets is not None
    assert library.facets.items("personality_traits/listeners") == ("a lighthouse keeper's parrot",)
