"""The config's rules across tables: what :class:`~gen_service.config_model.Config` checks once
every table is valid on its own (names that point at other tables, clock phases that neither
overlap nor stand still, keys of features not built yet), and the :class:`KeyProblem` that
points at the key at fault."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel

if TYPE_CHECKING:
    from gen_service.config_model import Config, PhaseConfig


class KeyProblem(ValueError):
    """Raised inside validators to point at a key other than the one being validated."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


def check_references(cfg: Config) -> None:
    """What one table cannot check alone: names that point at other tables (data types, model
    roles, phases), the clock phases' times, and keys whose feature is not built; raises the
    first problem as a :class:`KeyProblem`."""
    from gen_service.domain.datatypes import REGISTRY

    for name, dtc in cfg.datatypes.items():
        if name not in REGISTRY:
            raise KeyProblem(
                ("datatypes", name),
                f"unknown data type {name!r}; known types are {', '.join(REGISTRY)}",
            )
        if dtc.model not in cfg.models:
            raise KeyProblem(
                ("datatypes", name, "model"),
                f"model role {dtc.model!r} is not defined; add a [models.{dtc.model}] "
                f"table or use one of: {', '.join(cfg.models) or '(none defined)'}",
            )
        if dtc.min_words:
            from gen_service.domain.checking import rules_for

            try:
                rules_for(REGISTRY[name], dtc.min_words)
            except KeyError as exc:
                raise KeyProblem(
                    ("datatypes", name, "min_words"), f"{exc.args[0]}. Fix: use one of those"
                ) from None
        if dtc.total_target and dtc.daily_target > dtc.total_target:
            raise KeyProblem(
                ("datatypes", name, "daily_target"),
                f"daily_target {dtc.daily_target} exceeds total_target {dtc.total_target}; "
                "lower the daily target or raise the total",
            )
    if cfg.validation.model not in cfg.models and any(
        p.kind == "validate" for p in cfg.schedule.phases
    ):
        raise KeyProblem(
            ("validation", "model"),
            f"model role {cfg.validation.model!r} is not defined; add a "
            f"[models.{cfg.validation.model}] table or name an existing role",
        )
    if not cfg.schedule.phases:
        raise KeyProblem(
            ("schedule", "phases"),
            'no phases; add at least one [[schedule.phases]] table with kind = "generate"',
        )
    names: set[str] = set()
    for i, phase in enumerate(cfg.schedule.phases):
        if phase.name in names:
            raise KeyProblem(
                ("schedule", "phases", i, "name"),
                f"phase name {phase.name!r} is used twice; give each phase its own name",
            )
        names.add(phase.name)
        for dtn in phase.datatypes:
            if dtn not in cfg.datatypes:
                raise KeyProblem(
                    ("schedule", "phases", i, "datatypes"),
                    f"phase {phase.name!r} names data type {dtn!r}, which has no "
                    f"[datatypes.{dtn}] table; add one or remove it from the phase",
                )
    if cfg.schedule.mode == "clock":
        check_clock_phases(cfg.schedule.phases)
    problem = not_built_problems(cfg)
    if problem is not None:
        raise problem


def check_clock_phases(phases: tuple[PhaseConfig, ...]) -> None:
    covered: dict[int, str] = {}
    for i, phase in enumerate(phases):
        if phase.start is None or phase.end is None:
            raise KeyProblem(
                ("schedule", "phases", i, "start" if phase.start is None else "end"),
                f'clock phase {phase.name!r} needs start and end ("HH:MM", end may be '
                '"24:00"); add them, or set [schedule] mode = "sequential"',
            )
        start, end = phase.minutes()
        if start == end:
            raise KeyProblem(
                ("schedule", "phases", i, "end"),
                f"phase {phase.name!r} starts and ends at {phase.start}; give it a length",
            )
        span = range(start, end) if end > start else [*range(start, 1440), *range(0, end)]
        for minute in span:
            other = covered.get(minute % 1440)
            if other is not None:
                raise KeyProblem(
                    ("schedule", "phases", i, "start"),
                    f"phase {phase.name!r} ({phase.start}-{phase.end}) overlaps phase "
                    f"{other!r} at {minute // 60 % 24:02d}:{minute % 60:02d}; move one of them",
                )
            covered[minute % 1440] = phase.name


# Keys of the format whose feature is not built yet: (table path, key) -> what the key would
# turn on. Accepted at their default, refused otherwise. Remove an entry when its feature lands.
NOT_BUILT: dict[tuple[str, str], str] = {}


def not_built_problems(cfg: Config) -> KeyProblem | None:
    sections: list[tuple[tuple[str | int, ...], str, BaseModel]] = [
        (("service",), "service", cfg.service),
        (("validation",), "validation", cfg.validation),
        (("dedup",), "dedup", cfg.dedup),
    ]
    sections += [(("models", role), "models", m) for role, m in cfg.models.items()]
    for loc, table, section in sections:
        for key, field in type(section).model_fields.items():
            feature = NOT_BUILT.get((table, key))
            if feature is None or key not in section.model_fields_set:
                continue
            value = getattr(section, key)
            if value == field.get_default(call_default_factory=True):
                continue
            return KeyProblem(
                (*loc, key),
                f"{value!r} would turn on {feature}, which this version of gen-service does not "
                f"have yet. Fix: remove the key (or set it to its default, "
                f"{field.get_default(call_default_factory=True)!r})",
            )
    return None
