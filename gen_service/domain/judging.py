"""The judge (memo stage 2), the pure part: what the judge sees, what it answers, what that
means.

A judge request shows one sample *blind*: the fields that carry its labels are hidden
(OCEAN scores, the capacity and the support level, the option kinds, the relationship score),
and the judge re-derives them (:class:`JudgeSpec` of each data type says how). It also rates
four dimensions from 0 to 1 (authenticity, consistency, complexity, usability, the memo's),
lists issues and recommends a fix. The service computes the overall score (the mean of the
four: the model's own overall is never trusted) and the label agreement, and flags a batch
whose judged mean is below ``validation.flag_below`` or whose labels disagree.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, StrictUndefined, Template, TemplateError
from pydantic import BaseModel, Field, create_model

from gen_service.domain.datatypes._base import DataTypeSpec, LabelResult, SampleModel
from gen_service.domain.dimensions import DIMENSIONS as DIMENSIONS
from gen_service.domain.schema import inline_refs
from gen_service.errors import ConfigError

JUDGE_SYSTEM = "system"
JUDGE_VARIABLES = ("title", "description", "sample", "has_labels")


class VerdictBase(SampleModel):
    """What every verdict holds: four scores, the issues and a recommendation."""

    authenticity: float = Field(
        ge=0, le=1, description="how true to life the psychology and the voice are, 0..1"
    )
    consistency: float = Field(
        ge=0, le=1, description="how well every field agrees with every other, 0..1"
    )
    complexity: float = Field(
        ge=0, le=1, description="nuance: mixed motives, subtext, nothing one-note, 0..1"
    )
    usability: float = Field(
        ge=0, le=1, description="how ready it is to train a game's character model on, 0..1"
    )
    issues: list[str] = Field(
        max_length=6, description="concrete problems, one short sentence each; empty if none"
    )
    recommendation: str = Field(
        min_length=1,
        description="one or two sentences telling the writer what to do better next time",
    )


_VERDICT_MODELS: dict[str, type[VerdictBase]] = {}


def verdict_model(spec: DataTypeSpec) -> type[VerdictBase]:
    """The verdict model of ``spec``: the base, plus ``labels`` where the type has labels."""
    labels = spec.judge.labels if spec.judge is not None else None
    if labels is None:
        return VerdictBase
    cached = _VERDICT_MODELS.get(spec.name)
    if cached is not None and cached.model_fields["labels"].annotation is labels:
        return cached
    model: type[VerdictBase] = create_model(
        f"{spec.model.__name__}Verdict",
        __base__=VerdictBase,
        labels=(
            labels,
            Field(description="the labels you re-derive from the sample, without seeing them"),
        ),
    )
    _VERDICT_MODELS[spec.name] = model
    return model


def verdict_schema(spec: DataTypeSpec) -> dict[str, Any]:
    """The JSON schema of ``spec``'s verdict, inlined for grammar compilers."""
    return inline_refs(verdict_model(spec).model_json_schema())


@dataclass(frozen=True, slots=True)
class Assessment:
    """One judged sample, as the service scores it."""

    overall: float
    scores: Mapping[str, float]
    labels: LabelResult | None  # None: the type has no labels
    issues: tuple[str, ...]
    recommendation: str
    judge_labels: Any  # the labels the judge gave, as JSON, or None

    @property
    def labels_ok(self) -> bool | None:
        return None if self.labels is None else self.labels.ok


def assess(spec: DataTypeSpec, sample: BaseModel, verdict: VerdictBase, key: Any) -> Assessment:
    """Score a verdict: the overall is the mean of the four dimensions; labels are compared
    with the sample's own (``key`` is what the blind view hid, e.g. the option order)."""
    scores = {d: float(getattr(verdict, d)) for d in DIMENSIONS}
    labels = getattr(verdict, "labels", None)
    result = None
    if labels is not None and spec.judge is not None and spec.judge.agreement is not None:
        result = spec.judge.agreement(sample, labels, key)
    return Assessment(
        overall=round(sum(scores.values()) / len(scores), 4),
        scores=scores,
        labels=result,
        issues=tuple(i.strip() for i in verdict.issues if i.strip()),
        recommendation=verdict.recommendation.strip(),
        judge_labels=labels.model_dump(mode="json") if isinstance(labels, BaseModel) else None,
    )


def blind_view(spec: DataTypeSpec, sample: BaseModel, seed: int) -> tuple[dict[str, Any], Any]:
    """What the judge sees of ``sample`` and the key to what was hidden (seeded, so a sample
    judged twice is shown the same way)."""
    payload = sample.model_dump(mode="json")
    if spec.judge is None:
        return payload, None
    return spec.judge.blind(payload, random.Random(seed))


@dataclass(frozen=True, slots=True)
class BatchVerdict:
    """What the judged samples of one batch say about the batch."""

    mean: float
    flagged: bool
    reason: str | None
    recommendations: tuple[str, ...]


def batch_verdict(assessments: Sequence[Assessment], flag_below: float) -> BatchVerdict:
    """Flag the batch when its judged mean is below ``flag_below`` or a sample's labels
    disagree with the judge's."""
    mean = round(sum(a.overall for a in assessments) / len(assessments), 4)
    reasons: list[str] = []
    if mean < flag_below:
        reasons.append(f"judged mean {mean:.2f} is below {flag_below:.2f}")
    disagreeing = [a for a in assessments if a.labels is not None and not a.labels.ok]
    if disagreeing:
        details = "; ".join(a.labels.detail for a in disagreeing if a.labels is not None)
        reasons.append(f"labels disagree on {len(disagreeing)} sample(s): {details}")
    recommendations = tuple(
        dict.fromkeys(a.recommendation for a in assessments if a.recommendation)
    )
    return BatchVerdict(mean, bool(reasons), "; ".join(reasons) or None, recommendations)


def refinement_text(recommendations: Sequence[str], issues: Sequence[str]) -> str:
    """The judge's feedback as the ``refinement`` slot of a regeneration prompt."""
    lines = [f"- {r}" for r in recommendations]
    lines += [f"- Avoid: {i}" for i in dict.fromkeys(issues)]
    return "\n".join(lines[:12])


class JudgeLibrary:
    """The judge's templates: a system prompt and one user prompt per data type, each with a
    rubric naming the memo's bars and one good and one bad example."""

    def __init__(self, templates: Mapping[str, str], *, sources: Mapping[str, str] | None = None):
        self._sources = dict(sources or {})
        env = Environment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
        self._texts = dict(templates)
        self._templates: dict[str, Template] = {}
        for name, text in templates.items():
            try:
                self._templates[name] = env.from_string(text)
            except TemplateError as exc:
                raise ConfigError(
                    f"judge template {self._where(name)} has a Jinja syntax error: {exc}. "
                    "Fix the template and reload.",
                    path=self._where(name),
                ) from None
        if JUDGE_SYSTEM not in self._templates:
            raise ConfigError(
                f"no judge system prompt: create {self._where(JUDGE_SYSTEM)}",
                path=self._where(JUDGE_SYSTEM),
            )

    def _where(self, name: str) -> str:
        return self._sources.get(name, f"prompts/judge/{name}.j2")

    def template_hash(self, datatype: str) -> str:
        text = self._texts.get(JUDGE_SYSTEM, "") + "\0" + self._texts.get(datatype, "")
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def render(self, spec: DataTypeSpec, view: Mapping[str, Any]) -> tuple[str, str]:
        """(system, user) prompts that ask the judge about the blind ``view`` of a sample."""
        template = self._templates.get(spec.name)
        if template is None:
            raise ConfigError(
                f"no judge template for {spec.name}: create {self._where(spec.name)}",
                path=self._where(spec.name),
            )
        variables = {
            "title": spec.title,
            "description": spec.description,
            "sample": json.dumps(view, indent=2, ensure_ascii=False),
            "has_labels": spec.judge is not None and spec.judge.labels is not None,
        }
        try:
            return (
                self._templates[JUDGE_SYSTEM].render(variables),
                template.render(variables),
            )
        except TemplateError as exc:
            raise ConfigError(
                f"judge template for {spec.name} cannot be rendered: {exc}. Templates can use "
                f"only {', '.join(JUDGE_VARIABLES)}; fix the template and reload.",
                path=self._where(spec.name),
            ) from None
