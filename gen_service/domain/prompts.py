"""Prompt rendering (pure): Jinja2 templates and few-shot examples in, ``Prompt`` out.

The texts come from :mod:`gen_service.adapters.prompt_files`; this module never touches disk.
Templates are compiled once, with ``StrictUndefined`` so a typo in a template is an error at
start-up (``check_renders``), not a silently empty line in every prompt.

Variables every template can use:

- ``title``, ``description``: the data type's human name and what it teaches
- ``batch_size``: how many items to return
- ``items``: one dict of facets per item (the sampled briefs), in order
- ``examples``: 2-3 few-shot examples, each a pretty-printed JSON string
- ``refinement``: ``None``, or a judge's recommendations the batch must address
- ``field_guide``: every output field with its type, bounds and meaning, one per line
- ``stock_phrases``: the phrases the content checks reject (system template)

The few-shot examples rotate: the ones shown are a seeded choice per *rotation* (a number the
caller advances every few dozen requests), not per request, and the templates put them before
the per-request briefs, so the static prefix (system text, instructions, examples) stays
identical between rotations and the server's prompt cache is reused. Each prompt records its
provenance: the templates' version hash and the ids of the examples it showed.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jinja2 import (
    Environment,
    StrictUndefined,
    Template,
    TemplateError,
    TemplateSyntaxError,
    UndefinedError,
)

from gen_service.domain.content import STOCK_PHRASES
from gen_service.domain.datatypes._base import DataTypeSpec, ItemContext
from gen_service.domain.facets import FacetLibrary
from gen_service.errors import ConfigError

SYSTEM = "system"
TEMPLATE_VARIABLES = (
    "title",
    "description",
    "batch_size",
    "items",
    "examples",
    "refinement",
    "field_guide",
    "stock_phrases",
)
MIN_EXAMPLES, MAX_EXAMPLES = 2, 3


@dataclass(frozen=True, slots=True)
class Prompt:
    system: str
    user: str
    template_hash: str = ""  # the version of the system and type templates that made it
    example_ids: tuple[str, ...] = ()  # the few-shot examples it shows


def example_id(datatype: str, example: Mapping[str, Any]) -> str:
    """A stable id for a few-shot example: its type and a hash of its content."""
    text = json.dumps(example, sort_keys=True, ensure_ascii=False)
    return f"{datatype}:{hashlib.sha256(text.encode()).hexdigest()[:12]}"


class PromptLibrary:
    """The system template, one template per data type, their few-shot examples and the facet
    lists the briefs are drawn from.

    ``sources`` optionally maps a template name to the file it came from, for error messages;
    ``facets`` is the library loaded with the prompts (None: the shipped lists)."""

    def __init__(
        self,
        templates: Mapping[str, str],
        examples: Mapping[str, Sequence[Mapping[str, Any]]],
        *,
        sources: Mapping[str, str] | None = None,
        facets: FacetLibrary | None = None,
    ) -> None:
        self.facets = facets
        self._sources = dict(sources or {})
        self._texts = dict(templates)
        if SYSTEM not in templates:
            raise ConfigError(
                f"no system prompt template: create {self._where(SYSTEM)} next to the data "
                "type templates",
                path=self._where(SYSTEM),
            )
        env = Environment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
        self._templates: dict[str, Template] = {
            name: self._compile(env, name, text) for name, text in templates.items()
        }
        self._examples: dict[str, tuple[str, ...]] = {
            name: tuple(json.dumps(example, indent=2, ensure_ascii=False) for example in items)
            for name, items in examples.items()
        }
        self._example_ids: dict[str, tuple[str, ...]] = {
            name: tuple(example_id(name, example) for example in items)
            for name, items in examples.items()
        }
        self._field_guides: dict[str, str] = {}

    def has(self, datatype: str) -> bool:
        return datatype in self._templates

    def examples_for(self, datatype: str) -> tuple[str, ...]:
        """The few-shot examples of ``datatype`` as pretty JSON strings."""
        return self._examples.get(datatype, ())

    def template_hash(self, datatype: str) -> str:
        """A short hash of the system and ``datatype`` templates: the prompt's version."""
        text = self._texts.get(SYSTEM, "") + "\0" + self._texts.get(datatype, "")
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def render(
        self,
        datatype: DataTypeSpec,
        *,
        batch_size: int,
        contexts: Sequence[ItemContext],
        rng: random.Random,
        refinement: str | None = None,
        examples: int | None = None,
        rotation: int | None = None,
    ) -> Prompt:
        """The system and user prompt asking for ``batch_size`` items, one per context.

        ``examples`` fixes how many few-shot examples to include (a small model's context is
        precious); by default 2 or 3. With ``rotation`` set, the examples (and their number)
        are a function of the data type and the rotation alone, so consecutive requests of one
        rotation share their prefix; without it they are drawn from ``rng``."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if len(contexts) != batch_size:
            raise ValueError(f"{len(contexts)} contexts for a batch of {batch_size}; pass one each")
        template = self._templates.get(datatype.name)
        if template is None:
            raise ConfigError(
                f"no prompt template for data type {datatype.name!r}: create "
                f"{self._where(datatype.name)} or point [service].prompts_dir at the folder "
                "that has it",
                path=self._where(datatype.name),
            )
        pool = self._examples.get(datatype.name, ())
        ids = self._example_ids.get(datatype.name, ())
        picker = rng if rotation is None else random.Random(f"{datatype.name}:{rotation}")
        wanted = picker.randint(MIN_EXAMPLES, MAX_EXAMPLES) if examples is None else examples
        picked = picker.sample(range(len(pool)), min(wanted, len(pool)))
        chosen = [pool[i] for i in picked]
        variables: dict[str, Any] = {
            "title": datatype.title,
            "description": datatype.description,
            "batch_size": batch_size,
            "items": [dict(context.facets) for context in contexts],
            "examples": chosen,
            "refinement": refinement.strip() if refinement and refinement.strip() else None,
            "field_guide": self._field_guide(datatype),
            "stock_phrases": STOCK_PHRASES,
        }
        return Prompt(
            system=self._render(SYSTEM, self._templates[SYSTEM], variables),
            user=self._render(datatype.name, template, variables),
            template_hash=self.template_hash(datatype.name),
            example_ids=tuple(ids[i] for i in picked),
        )

    def check_renders(self, datatypes: Iterable[DataTypeSpec]) -> None:
        """Render every template once, with and without a refinement, so a template error
        surfaces at start-up or on SIGHUP rather than in the middle of a run."""
        for datatype in datatypes:
            for refinement in (None, "Make the dialogue more specific."):
                rng = random.Random(0)
                self.render(
                    datatype,
                    batch_size=2,
                    contexts=datatype.sample_contexts(rng, 2, facets=self.facets),
                    rng=rng,
                    refinement=refinement,
                )

    def _where(self, name: str) -> str:
        return self._sources.get(name, f"prompts/{name}.j2")

    def _compile(self, env: Environment, name: str, text: str) -> Template:
        try:
            return env.from_string(text)
        except TemplateSyntaxError as exc:
            problem = (exc.message or "invalid syntax").rstrip(".")
            raise ConfigError(
                f"prompt template {self._where(name)} has a Jinja syntax error on line "
                f"{exc.lineno}: {problem}. Fix the template (tags are {{% ... %}}, "
                "variables {{ ... }}) and reload.",
                path=self._where(name),
            ) from None

    def _render(self, name: str, template: Template, variables: Mapping[str, Any]) -> str:
        try:
            return template.render(variables)
        except UndefinedError as exc:
            problem = f"it uses an undefined variable ({exc.message})"
        except TemplateError as exc:
            problem = (exc.message or type(exc).__name__).rstrip(".")
        except (TypeError, ValueError, ArithmeticError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        raise ConfigError(
            f"prompt template {self._where(name)} cannot be rendered: {problem}. Templates can "
            f"use only {', '.join(TEMPLATE_VARIABLES)} (each item is a dict of its brief's "
            "facets); fix the template and reload.",
            path=self._where(name),
        )

    def _field_guide(self, datatype: DataTypeSpec) -> str:
        guide = self._field_guides.get(datatype.name)
        if guide is None:
            guide = field_guide(datatype.model.model_json_schema())
            self._field_guides[datatype.name] = guide
        return guide


def field_guide(schema: Mapping[str, Any]) -> str:
    """Every property of a JSON schema as an indented list: name, type and bounds, meaning.

    The backend constrains the output to the schema, but the model never sees the schema's
    descriptions; this puts them in the prompt."""
    defs: Mapping[str, Any] = schema.get("$defs", {})
    lines: list[str] = []

    def resolve(node: Mapping[str, Any]) -> Mapping[str, Any]:
        ref = node.get("$ref")
        if isinstance(ref, str):
            return {**defs[ref.rsplit("/", 1)[1]], **{k: v for k, v in node.items() if k != "$ref"}}
        return node

    def walk(node: Mapping[str, Any], depth: int) -> None:
        for name, raw in node.get("properties", {}).items():
            prop = resolve(raw)
            kind = _kind(prop, resolve)
            uniform = _uniform_leaves(prop, resolve)
            if uniform is not None:
                # e.g. OCEAN: five numbers 0..1 read better as one line than five.
                kind = f"object: {', '.join(prop['properties'])}; each {uniform}"
            description = prop.get("description", "")
            lines.append(f"{'  ' * depth}- {name} ({kind}): {description}".rstrip(": "))
            if "properties" in prop and uniform is None:
                walk(prop, depth + 1)
            items = prop.get("items")
            if isinstance(items, Mapping) and "properties" in resolve(items):
                walk(resolve(items), depth + 1)

    walk(resolve(schema), 0)
    return "\n".join(lines)


def _uniform_leaves(prop: Mapping[str, Any], resolve: Any) -> str | None:
    """The shared kind of an object's properties when they are all leaves of one kind."""
    properties = prop.get("properties")
    if not isinstance(properties, Mapping) or len(properties) < 2:
        return None
    kinds = set()
    for child in properties.values():
        child = resolve(child)
        if "properties" in child or child.get("type") in ("object", "array"):
            return None
        kinds.add(_kind(child, resolve))
    return kinds.pop() if len(kinds) == 1 else None


def _kind(prop: Mapping[str, Any], resolve: Any) -> str:
    if "enum" in prop:
        return "one of " + " | ".join(str(v) for v in prop["enum"])
    kind = str(prop.get("type", "value"))
    if kind in ("number", "integer") and ("minimum" in prop or "maximum" in prop):
        low, high = prop.get("minimum", "..."), prop.get("maximum", "...")
        return f"{kind} {_num(low)} to {_num(high)}"
    if kind == "array":
        items = resolve(prop.get("items", {}))
        low, high = prop.get("minItems"), prop.get("maxItems")
        count = f"{low} to {high} " if low is not None and high is not None else ""
        what = "objects" if items.get("type") == "object" else f"{items.get('type', 'value')}s"
        return f"list of {count}{what}"
    return kind


def _num(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
