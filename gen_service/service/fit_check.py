"""Does a configured batch fit? ``check-config`` and ``doctor`` say when it does not.

The service sizes every request to fit (``domain/budget.py``), so a ``batch_size`` whose answer
cannot fit ``num_predict`` (or whose prompt and answer cannot fit ``num_ctx``) is not an
error: requests just ask for fewer items. But the operator should know before day 3 that the
memo's "25 personality samples per request" will be 10, so this is a warning."""

from __future__ import annotations

import json
import random

from gen_service.config import Config
from gen_service.domain import budget
from gen_service.domain.datatypes import REGISTRY
from gen_service.domain.prompts import PromptLibrary


def batch_fit_warnings(cfg: Config, library: PromptLibrary) -> list[str]:
    """One warning per data type whose configured batch cannot fit, with the fix."""
    warnings: list[str] = []
    for name, dtc in cfg.datatypes.items():
        spec = REGISTRY[name]
        model = cfg.models[dtc.model]
        examples = [
            json.dumps(json.loads(e), separators=(",", ":"), ensure_ascii=False)
            for e in library.examples_for(name)
        ]
        estimate = budget.seed_estimate(examples, think=dtc.think)
        rng = random.Random(0)
        contexts = spec.sample_contexts(rng, dtc.batch_size, facets=library.facets)
        prompt = library.render(
            spec,
            batch_size=dtc.batch_size,
            contexts=contexts,
            rng=rng,
            examples=dtc.few_shot,
            rotation=0,
        )
        chars = len(prompt.system) + len(prompt.user)
        fit = budget.fit(
            estimate,
            num_predict=dtc.num_predict,
            num_ctx=model.num_ctx,
            prompt_chars=chars,
            cap=dtc.batch_size,
        )
        if fit.items >= dtc.batch_size:
            continue
        need = round(estimate.overhead + dtc.batch_size * estimate.per_item)
        prompt_tokens = round(chars * estimate.prompt_ratio)
        if dtc.num_predict <= fit.room:
            why = f"num_predict is {dtc.num_predict:,}"
            fix = f"raise num_predict to about {round(need / budget.MARGIN):,}"
        else:
            why = (
                f"num_ctx {model.num_ctx:,} leaves {fit.room:,} tokens after a ~{prompt_tokens:,}"
                "-token prompt"
            )
            fix = f"raise [models.{dtc.model}] num_ctx"
        thinking = " plus thinking" if dtc.think else ""
        warnings.append(
            f"[datatypes.{name}] batch_size {dtc.batch_size} does not fit: at ~"
            f"{round(estimate.per_item):,} output tokens an item (the few-shot examples' "
            f"length{thinking}) the batch needs ~{need:,} tokens, but {why}; each request will "
            f"ask for at most {fit.items} items. Fix: lower batch_size to {fit.items}, or {fix}"
        )
    return warnings
