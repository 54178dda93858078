"""What an exported dataset looks like (pure): its columns and their types, the provenance
columns beside the training fields, a cheap diversity figure, and the dataset card (README.md)
whose YAML front matter lets Hugging Face ``datasets`` load each data type as a config.

The card declares every config's features (``dataset_info``) instead of leaving ``datasets``
to infer them from the first rows: inference fails when a column is null in the first rows and
set later (``quality`` of unjudged samples), and a declared schema is a contract besides.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from gen_service.domain.schema import inline_refs
from gen_service.domain.splits import SPLITS, Split

Dtype = Literal["string", "int64", "float64", "bool"]


@dataclass(frozen=True, slots=True)
class Scalar:
    dtype: Dtype


@dataclass(frozen=True, slots=True)
class ListOf:
    item: ColumnType


@dataclass(frozen=True, slots=True)
class Struct:
    fields: tuple[Column, ...]


ColumnType = Scalar | ListOf | Struct


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: ColumnType
    description: str = ""


STRING, INT, FLOAT, BOOL = Scalar("string"), Scalar("int64"), Scalar("float64"), Scalar("bool")

# Beside every training row: where it came from and what the judge made of it. The training
# fields are the sample's payload exactly as validated; these names never collide with them
# (tests/domain/test_splits.py checks every data type).
PROVENANCE: tuple[Column, ...] = (
    Column("id", INT, "the sample's id in the database (`samples.id`)"),
    Column("batch_id", INT, "the batch (one request to the model) it came from (`batches.id`)"),
    Column(
        "cluster_id",
        INT,
        "the near-duplicate cluster its split was decided by; its own id when it is in none",
    ),
    Column("model", STRING, "the model that wrote it"),
    Column("created_at", STRING, "when it was committed (UTC, ISO-8601)"),
    Column(
        "brief",
        STRING,
        "the brief it was written from (sampled facets, quota key, pinned fields) as JSON "
        "text; null when none was recorded",
    ),
    Column("judged", BOOL, "whether the judge has scored its batch"),
    Column("quality", FLOAT, "its batch's judged mean, 0..1; null when not judged"),
    Column("reviewed", BOOL, "whether a person accepted its batch after the judge flagged it"),
)
PROVENANCE_NAMES = frozenset(c.name for c in PROVENANCE)

MESSAGE = Struct((Column("role", STRING), Column("content", STRING)))
CHAT_COLUMNS: tuple[Column, ...] = (
    Column("messages", ListOf(MESSAGE), "system, user and assistant turns (TRL convention)"),
    Column("id", INT, "the sample it was rendered from (`samples.id`)"),
)
OPTION_COLUMN = Column("option", STRING, "the irony option this row teaches")


def columns_from_schema(schema: Mapping[str, Any]) -> tuple[Column, ...]:
    """The top-level columns of a pydantic model's JSON schema (serialization mode, so derived
    fields such as ``dominant_trait`` are included), in schema order."""
    resolved = inline_refs(dict(schema))
    return _struct(resolved).fields


def _struct(node: Mapping[str, Any]) -> Struct:
    props: Mapping[str, Any] = node.get("properties", {})
    return Struct(
        tuple(
            Column(name, _type(sub), str(sub.get("description", ""))) for name, sub in props.items()
        )
    )


def _type(node: Mapping[str, Any]) -> ColumnType:
    if "anyOf" in node:  # Optional[X]: the non-null branch
        branches = [b for b in node["anyOf"] if b.get("type") != "null"]
        if len(branches) == 1:
            return _type(branches[0])
        return STRING  # a union of several types is kept as JSON text
    kind = node.get("type")
    if kind == "object" or "properties" in node:
        return _struct(node)
    if kind == "array":
        return ListOf(_type(node.get("items", {})))
    if kind == "integer":
        return INT
    if kind == "number":
        return FLOAT
    if kind == "boolean":
        return BOOL
    return STRING  # strings, enums of strings, consts


def dataset_row(payload: Mapping[str, Any], provenance: Mapping[str, Any]) -> dict[str, Any]:
    """One training row: the payload's fields as they are, then the provenance columns."""
    clash = PROVENANCE_NAMES.intersection(payload)
    if clash:
        raise ValueError(f"payload fields {sorted(clash)} collide with provenance columns")
    return {**payload, **{c.name: provenance[c.name] for c in PROVENANCE}}


# -- diversity ------------------------------------------------------------------------------

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def distinct_n(texts: Iterable[str], n: int = 2) -> float | None:
    """Distinct-n: unique word n-grams over all n-grams of ``texts`` (n-grams do not cross
    texts); None when there are none. 1.0 means no n-gram repeats."""
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        tokens = _WORD.findall(text.casefold())
        for i in range(len(tokens) - n + 1):
            seen.add(tuple(tokens[i : i + n]))
            total += 1
    return len(seen) / total if total else None


# -- the card -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DatasetConfig:
    """One loadable config: a name, a file per non-empty split, and its columns."""

    name: str
    files: Mapping[Split, str]  # split → path relative to the dataset folder
    columns: tuple[Column, ...]


_PLAIN = re.compile(r"^[A-Za-z0-9_./-]+$")


def _scalar(value: str) -> str:
    return value if _PLAIN.match(value) else json.dumps(value, ensure_ascii=False)


def _type_yaml(kind: ColumnType, pad: str) -> list[str]:
    if isinstance(kind, Scalar):
        return [f"{pad}dtype: {kind.dtype}"]
    if isinstance(kind, Struct):
        return [f"{pad}struct:", *_fields_yaml(kind.fields, pad)]
    item = kind.item
    if isinstance(item, Scalar):
        return [f"{pad}list: {item.dtype}"]
    if isinstance(item, Struct):
        return [f"{pad}list:", *_fields_yaml(item.fields, pad)]
    return [f"{pad}list:", *_type_yaml(item, pad + "  ")]


def _fields_yaml(fields: Sequence[Column], pad: str) -> list[str]:
    lines: list[str] = []
    for column in fields:
        lines.append(f"{pad}- name: {_scalar(column.name)}")
        lines.extend(_type_yaml(column.type, pad + "  "))
    return lines


def front_matter(configs: Sequence[DatasetConfig], *, pretty_name: str) -> str:
    """The card's YAML header: ``configs`` (data files per split) and ``dataset_info``
    (features) for every config, so ``load_dataset(folder, name)`` needs nothing else."""
    lines = [
        "---",
        f"pretty_name: {_scalar(pretty_name)}",
        "language:",
        "- en",
        "tags:",
        "- synthetic",
        "- gen-service",
    ]
    if not configs:  # nothing to load: no configs rather than empty lists
        return "\n".join([*lines, "---"]) + "\n"
    lines.append("configs:")
    for config in configs:
        lines += [f"- config_name: {_scalar(config.name)}", "  data_files:"]
        for split in SPLITS:
            if split in config.files:
                lines += [f"  - split: {split}", f"    path: {_scalar(config.files[split])}"]
    lines.append("dataset_info:")
    for config in configs:
        lines += [f"- config_name: {_scalar(config.name)}", "  features:"]
        lines += _fields_yaml(config.columns, "  ")
    lines.append("---")
    return "\n".join(lines) + "\n"


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_num(v) for v in row) + " |" for row in rows]
    return lines


def render_card(
    manifest: Mapping[str, Any],
    configs: Sequence[DatasetConfig],
    *,
    fields: Mapping[str, Sequence[Column]],
    chat_layouts: Mapping[str, str],
) -> str:
    """README.md of an export: front matter, then what is in it and how it was made.
    ``manifest`` is the export's manifest.json; ``fields`` the training columns per type."""
    types: Mapping[str, Mapping[str, Any]] = manifest["datatypes"]
    options: Mapping[str, Any] = manifest["options"]
    chat = bool(options["chat"])
    first = configs[0].name if configs else "personality_traits"
    out = [front_matter(configs, pretty_name="gen-service character-psychology data")]
    out += [
        "# gen-service character-psychology data",
        "",
        "Synthetic training data for a narrative game's character models, written by local "
        "LLMs and checked by gen-service "
        f"{manifest['gen_service_version']}, exported {manifest['exported_at']}. Every row was "
        "written by a model; none was written by a person, and a person looked at a batch only "
        "when its `reviewed` column is true.",
        "",
        "## Loading",
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        f'ds = load_dataset("path/to/this/folder", "{first}")  # train / validation / test',
    ]
    if chat:
        out.append(f'chat = load_dataset("path/to/this/folder", "{first}_chat")  # messages')
    out += [
        "```",
        "",
        "One config per data type"
        + (", and `<type>_chat` with its chat rendering" if chat else "")
        + ". A split with no rows is left out of its config.",
        "",
        "## Contents",
        "",
    ]
    rows = []
    for name, info in types.items():
        counts = info["rows"]
        rows.append([f"`{name}`", *(counts[s] for s in SPLITS), info["total"], info["clusters"]])
        if chat:
            chat_counts = info["chat_rows"]
            rows.append(
                [f"`{name}_chat`", *(chat_counts[s] for s in SPLITS), sum(chat_counts.values()), ""]
            )
    out += _table(["config", *SPLITS, "total", "clusters"], rows)
    out += ["", "## What was exported", ""]
    out += _selection_lines(options, types)
    ratios = options["splits"]
    out += [
        "",
        "## Splits",
        "",
        f"train / validation / test = {ratios['train']:g} / {ratios['validation']:g} / "
        f"{ratios['test']:g}. A row's split is a function of its near-duplicate cluster alone "
        "(sha256 of the cluster id mapped to [0, 1) against the cumulative shares; a sample in "
        "no cluster is its own cluster): near-copies never straddle splits, and a later export "
        "of a grown database with the same shares puts every earlier row in the same split "
        "again. Counts per split follow the shares only roughly on small sets.",
        "",
        "## Columns",
        "",
        "Each row holds one sample's fields exactly as validated by its data type's model "
        "(the training fields), then the provenance columns. Drop the provenance before "
        "training with `ds.remove_columns([...])`.",
        "",
    ]
    for name in types:
        described = ", ".join(f"`{c.name}`" for c in fields.get(name, ()))
        out.append(f"- `{name}`: {described}")
    out += ["", "Provenance columns:", ""]
    out += _table(
        ["column", "type", "meaning"],
        ([f"`{c.name}`", _kind(c.type), c.description] for c in PROVENANCE),
    )
    if chat:
        out += [
            "",
            "## Chat format",
            "",
            "`<type>_chat` configs (files under `<type>/chat/`) hold `messages`: a system "
            "prompt that states the task, a user turn with what the game knows, and the "
            "assistant turn the model should produce (JSON), in the TRL conversational "
            "convention, plus the sample's `id`. Rows are in the same split as their sample.",
            "",
        ]
        out += [f"- `{name}`: {chat_layouts.get(name, '')}" for name in types]
    out += [
        "",
        "## Quality",
        "",
        "The judge model scores a share of each batch's samples (authenticity, consistency, "
        "complexity, usability, 0..1; overall is their mean). Figures over the exported rows "
        "that were scored themselves; `quality` in each row is its batch's judged mean.",
        "",
    ]
    dims = ("overall", "authenticity", "consistency", "complexity", "usability", "label_agreement")
    out += _table(
        ["data type", "judged rows", *dims],
        (
            [f"`{n}`", i["quality"]["judged_samples"], *(i["quality"][d] for d in dims)]
            for n, i in types.items()
        ),
    )
    out += [
        "",
        "## Diversity",
        "",
        "Distinct-2 (unique word pairs over all word pairs) of each type's prose fields, over "
        "up to the first 1,000 exported rows of a fixed pseudo-random order, so types are "
        "compared on equal footing. `gen-service report` has the full diversity report.",
        "",
    ]
    out += _table(
        ["data type", "distinct-2", "rows read"],
        (
            [f"`{n}`", i["diversity"]["distinct_2"], i["diversity"]["samples"]]
            for n, i in types.items()
        ),
    )
    config = manifest.get("config")
    out += [
        "",
        "## Provenance",
        "",
        f"- gen-service {manifest['gen_service_version']}, git revision "
        f"{manifest['git_revision'] or 'unknown (not a git checkout)'}",
        f"- database: `{manifest['database']}`",
        "- config: "
        + (f"`{config['path']}`, sha256 `{config['sha256']}`" if config else "none given"),
        f"- exported at {manifest['exported_at']} with `{manifest['command']}`",
    ]
    for name, info in types.items():
        models = ", ".join(f"`{m}`" for m in info["models"]) or "–"
        out.append(f"- `{name}` written by {models}")
    out += ["", "`manifest.json` holds the same figures as JSON.", ""]
    return "\n".join(out)


def _selection_lines(
    options: Mapping[str, Any], types: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    lines = [
        "- Accepted samples (schema-valid, passed the generation-time checks, not a duplicate) "
        "of batches the judge passed, or flagged and then accepted by a person in review. "
        "Rejected, duplicate and flagged-unreviewed samples are never exported.",
    ]
    if options["include_unjudged"]:
        lines.append(
            "- Also accepted samples of batches the judge has not scored yet (`judged` false); "
            "the minimum quality does not apply to them."
        )
    else:
        lines.append("- Samples of batches the judge has not scored yet are left out.")
    if options["min_quality"] is not None:
        lines.append(f"- Only batches whose judged mean is at least {options['min_quality']:g}.")
    if options["balance"]:
        lines.append(
            "- Balanced: every type keeps as many rows as the smallest has, chosen by a fixed "
            "pseudo-random order of sample ids (independent of the split)."
        )
    test_data = sum(int(i.get("test_data", 0)) for i in types.values())
    if options.get("include_test_data") and test_data:
        lines.insert(
            0,
            f"- **Test data: {test_data:,} rows were generated by a test double (gen-service's "
            "fake Ollama), not by a language model. They are not real data: do not train on "
            "them.**",
        )
    elif test_data:
        lines.append(
            f"- {test_data:,} samples generated by a test double (the fake Ollama) were left out."
        )
    skipped = sum(int(i.get("skipped_invalid", 0)) for i in types.values())
    if skipped:
        lines.append(
            f"- {skipped:,} accepted samples no longer match their data type's model and were "
            "left out (see `skipped_invalid` in manifest.json)."
        )
    return lines


def _kind(kind: ColumnType) -> str:
    if isinstance(kind, Scalar):
        return kind.dtype
    if isinstance(kind, ListOf):
        return f"list<{_kind(kind.item)}>"
    return "struct"
