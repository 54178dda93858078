"""One planning run's shared view: the inputs with each model's rate and each data type's
speed, its quotas and the judge's load."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gen_service.domain.planner._inputs import PlanInput, TypeInput
from gen_service.domain.planner._results import ModelPlan, TypeRate
from gen_service.domain.planner._speed import judged_per_batch


def still_needed(t: TypeInput) -> int:
    return max(0, t.total_target - t.accepted)


@dataclass(frozen=True, slots=True)
class Context:
    inp: PlanInput
    models: Mapping[str, ModelPlan]
    rates: Mapping[str, TypeRate]

    def speed(self, datatype: str) -> float | None:
        return self.rates[datatype].samples_per_s

    def model(self, datatype: str) -> str:
        return self.inp.types[datatype].model

    def generate_order(self) -> list[str]:
        seen: dict[str, None] = {}
        for phase in self.inp.phases:
            for d in phase.datatypes:
                seen.setdefault(d)
        return list(seen)

    def nominal_quota(self) -> dict[str, float]:
        """A day's (or pass's) quota of every type: its daily target, or with no daily cap
        what its total still needs; nothing once the total is met."""
        quota: dict[str, float] = {}
        for name, t in self.inp.types.items():
            left = still_needed(t)
            quota[name] = 0.0 if left == 0 else float(t.daily_target or left)
        return quota

    def judged(self, made: Mapping[str, float]) -> float:
        """Samples the judge must score for the production ``made``."""
        judge = self.inp.judge
        if judge is None:
            return 0.0
        total = 0.0
        for name, n in made.items():
            t = self.inp.types[name]
            per_batch = t.batch_size * self.rates[name].acceptance_rate
            if n > 0 and per_batch > 0:
                total += n / per_batch * judged_per_batch(per_batch, judge.sample_rate)
        return total

    def judge_rate(self) -> float | None:
        """Samples judged per second."""
        judge = self.inp.judge
        if judge is None:
            return None
        rate = self.models[judge.model].aggregate_tokens_per_s
        return None if rate is None else rate / judge.tokens_per_verdict
