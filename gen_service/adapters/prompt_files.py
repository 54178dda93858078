"""Loading the prompt folder from disk into a :class:`PromptLibrary`.

Layout (``[service].prompts_dir``)::

    system.j2                  the system prompt shared by every data type
    <type>.j2                  one user prompt template per data type
    examples/<type>.jsonl      few-shot examples: one JSON object per line; blank lines and
                               lines starting with // are ignored
    facets/                    the lists briefs are sampled from (see facet_files.py and
                               facets/README.md)

Every example must validate against its data type's model and pass its checks: a broken
example would teach the model the very mistakes the checks reject. Problems become a
:class:`ConfigError` naming the file (and line) and the fix, raised at start-up or on SIGHUP.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gen_service.adapters.facet_files import load_facet_library
from gen_service.domain.checking import check
from gen_service.domain.datatypes import DataTypeSpec
from gen_service.domain.datatypes import get as get_datatype
from gen_service.domain.judging import JUDGE_SYSTEM, JudgeLibrary, blind_view
from gen_service.domain.prompts import SYSTEM, PromptLibrary
from gen_service.errors import ConfigError

KEY = "service.prompts_dir"
_COMMENT = "//"


def load_prompt_library(prompts_dir: Path, datatypes: Iterable[str]) -> PromptLibrary:
    """Read the system template, each data type's template and examples and the facet lists,
    and check that every template renders with briefs drawn from those lists."""
    specs = [_spec(name) for name in datatypes]
    if not prompts_dir.is_dir():
        raise ConfigError(
            f"the prompts folder {prompts_dir} does not exist or is not a folder: create it "
            "(system.j2, <type>.j2 and examples/<type>.jsonl) or point [service].prompts_dir "
            "at the folder that has them",
            path=str(prompts_dir),
            key=KEY,
        )
    sources = {SYSTEM: prompts_dir / f"{SYSTEM}.j2"}
    sources.update({spec.name: prompts_dir / f"{spec.name}.j2" for spec in specs})
    templates = {name: _read_text(path, f"prompts/{name}.j2") for name, path in sources.items()}
    examples = {
        spec.name: _load_examples(prompts_dir / "examples" / f"{spec.name}.jsonl", spec)
        for spec in specs
    }
    library = PromptLibrary(
        templates,
        examples,
        sources={name: str(path) for name, path in sources.items()},
        facets=load_facet_library(prompts_dir),
    )
    library.check_renders(specs)
    return library


JUDGE_DIR = "judge"


def load_judge_library(prompts_dir: Path, datatypes: Iterable[str]) -> JudgeLibrary:
    """Read ``judge/system.j2`` and ``judge/<type>.j2`` for each data type, and check that each
    renders with a blind view of the type's first few-shot example."""
    specs = [_spec(name) for name in datatypes]
    folder = prompts_dir / JUDGE_DIR
    sources = {JUDGE_SYSTEM: folder / f"{JUDGE_SYSTEM}.j2"}
    sources.update({spec.name: folder / f"{spec.name}.j2" for spec in specs})
    templates = {
        name: _read_text(path, f"prompts/{JUDGE_DIR}/{name}.j2") for name, path in sources.items()
    }
    library = JudgeLibrary(templates, sources={n: str(p) for n, p in sources.items()})
    for spec in specs:
        example = _load_examples(prompts_dir / "examples" / f"{spec.name}.jsonl", spec)[0]
        view, _ = blind_view(spec, spec.model.model_validate(example), seed=0)
        library.render(spec, view)
    return library


def _spec(name: str) -> DataTypeSpec:
    try:
        return get_datatype(name)
    except KeyError as exc:
        raise ConfigError(str(exc.args[0]), key="datatypes") from None


def _read_text(path: Path, wanted: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"missing prompt file {path}: create {wanted} or point [service].prompts_dir at "
            "the folder that has it",
            path=str(path),
            key=KEY,
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"prompt file {path} is not UTF-8 text ({exc.reason} at byte {exc.start}): save it "
            "as UTF-8",
            path=str(path),
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read prompt file {path}: {exc.strerror or exc}; check its permissions",
            path=str(path),
        ) from None


def _load_examples(path: Path, spec: DataTypeSpec) -> list[dict[str, Any]]:
    text = _read_text(path, f"prompts/examples/{spec.name}.jsonl")
    examples: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith(_COMMENT):
            continue
        where = f"{path}:{number}"
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"few-shot example {where} is not valid JSON ({exc.msg} at column "
                f"{exc.colno}): write one JSON object per line",
                path=str(path),
            ) from None
        if not isinstance(value, dict):
            raise ConfigError(
                f"few-shot example {where} is a JSON {type(value).__name__}, not an object: "
                f"write one {spec.name} sample object per line",
                path=str(path),
            )
        try:
            sample = spec.model.model_validate(value)
        except ValidationError as exc:
            raise ConfigError(
                f"few-shot example {where} does not match the {spec.name} model: "
                f"{_summarize(exc)}. Fix the example so it is a valid sample",
                path=str(path),
            ) from None
        problems = check(spec, sample)
        if problems:
            raise ConfigError(
                f"few-shot example {where} fails the {spec.name} checks: "
                f"{'; '.join(problems)}. Fix the example; it teaches the model what to write",
                path=str(path),
            )
        examples.append(value)
    if not examples:
        raise ConfigError(
            f"{path} holds no few-shot examples: add 2-3 {spec.name} samples, one JSON object "
            "per line",
            path=str(path),
        )
    return examples


def _summarize(exc: ValidationError, limit: int = 3) -> str:
    parts = [
        f"{'.'.join(str(p) for p in error['loc']) or '(object)'}: {error['msg']}"
        for error in exc.errors()[:limit]
    ]
    more = exc.error_count() - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
