"""The configuration: a frozen pydantic tree that mirrors the TOML tables.

One function loads it (:func:`load_config`); it is validated completely at start and again on
SIGHUP, and every problem becomes a :class:`~gen_service.errors.ConfigError` whose message names
the file, the key and the fix. The format is an interface: keys are added, never renamed. Every
key is documented in the README's "Configuration" section and in the comments of the two shipped
configs (``systemd/gen-service.toml``, ``quickstart.toml``); ``gen-service init`` writes one.

Every accepted key has an effect. A key of the format whose feature is not built yet is listed
in :data:`NOT_BUILT`: accepted at its default, refused (exit 78) at any other value, so an
operator never believes a feature is on when it is not.
"""

from __future__ import annotations

import datetime as dt
import os
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gen_service import resources
from gen_service.config_file import DEFAULT_CONFIG_PATHS as DEFAULT_CONFIG_PATHS
from gen_service.config_file import DEFAULT_DB, read_toml, resolve_path
from gen_service.config_file import find_config as find_config
from gen_service.errors import ConfigError

_HHMM = r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServiceConfig(_Section):
    db: Path = DEFAULT_DB
    # Unset: the prompt library shipped with gen-service.
    prompts_dir: Path = Field(default_factory=resources.prompts_dir)
    timezone: str = "local"
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    shutdown_grace_s: Annotated[float, Field(ge=0, le=3600)] = 60
    # The /metrics and /status endpoint: "host:port", ":port" (127.0.0.1) or "" (off).
    metrics_addr: str = ""
    # Progress bars in a foreground run: auto (on a terminal, unless log_format is json).
    progress: Literal["auto", "on", "off"] = "auto"
    # When the database's disk refuses writes (full, read-only): pause and retry, or exit 74.
    store_unavailable: Literal["pause", "exit"] = "pause"
    # Where the process phase and `gen-service report` write the daily reports; None: the
    # folder `reports` beside the database.
    reports_dir: Path | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value != "local":
            try:
                zoneinfo.ZoneInfo(value)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    f"unknown time zone {value!r}; use an IANA name such as 'Europe/Berlin' "
                    "or 'local'"
                ) from None
        return value

    @field_validator("metrics_addr")
    @classmethod
    def _listen_address(cls, value: str) -> str:
        if value:
            listen_address(value)
        return value

    def metrics_endpoint(self) -> tuple[str, int] | None:
        """(host, port) of the /metrics and /status endpoint; None when it is off."""
        return listen_address(self.metrics_addr) if self.metrics_addr else None

    def reports_path(self) -> Path:
        """The folder of the daily reports (``reports_dir``, else ``reports/`` beside the db)."""
        return self.reports_dir if self.reports_dir is not None else self.db.parent / "reports"

    def tzinfo(self) -> dt.tzinfo:
        """The configured zone with its rules (daylight saving included); "local" is the
        system's zone (see :func:`local_zone`)."""
        if self.timezone == "local":
            return local_zone()
        return zoneinfo.ZoneInfo(self.timezone)


def local_zone() -> dt.tzinfo:
    """The system's time zone with its rules: ``TZ``, else the zone /etc/localtime links to,
    else the rules in /etc/localtime itself; a fixed UTC offset only when none of those can
    be read (it cannot follow daylight saving, so a clock schedule would drift an hour)."""
    name = os.environ.get("TZ", "").lstrip(":")
    candidates = [name] if name else []
    try:
        target = os.path.realpath("/etc/localtime")
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    except OSError:
        pass
    for candidate in candidates:
        try:
            return zoneinfo.ZoneInfo(candidate)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            continue
    try:
        with open("/etc/localtime", "rb") as rules:
            return zoneinfo.ZoneInfo.from_file(rules, key="localtime")
    except (OSError, ValueError):
        pass
    fixed = dt.datetime.now().astimezone().tzinfo
    assert fixed is not None
    return fixed


class BackendConfig(_Section):
    kind: Literal["ollama", "openai", "llamacpp"] = "ollama"
    url: str = "http://127.0.0.1:11434"
    num_parallel: Annotated[int, Field(ge=1, le=256)] = 4
    request_timeout_s: Annotated[float, Field(gt=0)] = 900
    connect_timeout_s: Annotated[float, Field(gt=0)] = 10
    max_retries: Annotated[int, Field(ge=0, le=20)] = 3
    retry_initial_s: Annotated[float, Field(ge=0)] = 1.0
    retry_max_s: Annotated[float, Field(ge=0)] = 60.0
    keep_alive: str = "30m"  # how long a loaded model stays after its last request
    api_key_env: str = ""  # openai: name of the environment variable holding the key
    response_format: Literal["auto", "json_schema", "json_object"] = "auto"  # openai
    n_threads: Annotated[int, Field(ge=1)] | None = None  # llamacpp

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http(s) URL, e.g. 'http://127.0.0.1:11434'")
        return value.rstrip("/")


class GpuConfig(_Section):
    vram_gb: Annotated[float, Field(gt=0)] | None = None  # None: read it from nvidia-smi
    reserve_gb: Annotated[float, Field(ge=0)] = 0.5


class ModelConfig(_Section):
    name: Annotated[str, Field(min_length=1)]
    num_ctx: Annotated[int, Field(ge=256, le=1_048_576)] = 8192
    num_gpu: Annotated[int, Field(ge=0)] | None = None  # GPU layers (Ollama option); None: auto
    endpoints: tuple[str, ...] = ()  # openai: base URLs (with /v1) that serve this model
    path: Path | None = None  # llamacpp: a GGUF file; None: the embedded default
    # `plan`: decode tokens/s of one request alone with the model all on the GPU; history wins.
    tokens_per_s: Annotated[float, Field(gt=0)] | None = None
    grammar_safe: bool = True  # rewrite request schemas so llama.cpp grammars compile them
    # With grammar_safe: the characters free text may use; "letters" (letters, spaces, plain
    # punctuation) keeps a tiny model from writing numbers and ids where prose goes.
    text_charset: Literal["printable", "letters"] = "printable"


class DatatypeConfig(_Section):
    model: Annotated[str, Field(min_length=1)]
    batch_size: Annotated[int, Field(ge=1, le=50)]
    temperature: Annotated[float, Field(ge=0, le=2)]
    # Penalise repeating recent tokens (1.0 off); unset leaves the server's default (Ollama 1.1).
    repeat_penalty: Annotated[float, Field(ge=0.5, le=2.0)] | None = None
    think: bool = False
    num_predict: Annotated[int, Field(ge=16, le=131_072)] = 6000
    # Longest free-text field the schema allows under constrained decoding (bounds runaway
    # repetition); few_shot fixes the number of examples in the prompt (default: 2 or 3).
    max_string_chars: Annotated[int, Field(ge=20, le=100_000)] = 2000
    few_shot: Annotated[int, Field(ge=0, le=10)] | None = None
    # Fewest words per free-text field, by field (e.g. {"dialogue[]" = 3}); unset fields keep
    # the data type's own minimum.
    min_words: dict[str, Annotated[int, Field(ge=1, le=200)]] = Field(default_factory=dict)
    daily_target: Annotated[int, Field(ge=0)]
    total_target: Annotated[int, Field(ge=0)]
    # `plan`'s estimates until the database has history: output tokens per generated item
    # (thinking included; None: the type's built-in estimate) and the share of requested items
    # that end accepted.
    tokens_per_sample: Annotated[float, Field(gt=0)] | None = None
    acceptance_rate: Annotated[float, Field(gt=0, le=1)] = 0.9


class ValidationConfig(_Section):
    model: str = "judge"
    sample_rate: Annotated[float, Field(ge=0, le=1)] = 0.10
    temperature: Annotated[float, Field(ge=0, le=2)] = 0.3
    flag_below: Annotated[float, Field(ge=0, le=1)] = 0.70
    regenerate_flagged: bool = True
    # A flagged batch is regenerated at most this many times in a chain; past it, it waits for
    # review and fresh batches fill its place.
    max_regenerations: Annotated[int, Field(ge=0, le=10)] = 2
    num_predict: Annotated[int, Field(ge=64, le=131_072)] = 2048  # the verdict's token budget
    think: bool = False  # Qwen3's thinking for the judge (costs tokens, sent only where supported)
    # `plan`: output tokens per verdict (None: a built-in estimate, more when think is on).
    tokens_per_verdict: Annotated[float, Field(gt=0)] | None = None


class DedupConfig(_Section):
    # A sample at least this similar (estimated Jaccard of word 3-shingles) to an accepted one
    # of its type is a duplicate; at least cluster_threshold, it joins that sample's cluster,
    # which the export keeps in one split.
    threshold: Annotated[float, Field(gt=0, le=1)] = 0.85
    cluster_threshold: Annotated[float, Field(gt=0, le=1)] = 0.5

    @model_validator(mode="after")
    def _cluster_below_duplicate(self) -> DedupConfig:
        if self.cluster_threshold > self.threshold:
            raise ValueError(
                f"cluster_threshold {self.cluster_threshold} is above threshold "
                f"{self.threshold}; a cluster gathers related samples, duplicates are the "
                "closest of them: lower cluster_threshold"
            )
        return self


class PhaseConfig(_Section):
    name: Annotated[str, Field(min_length=1)]
    kind: Literal["generate", "validate", "process"]
    datatypes: tuple[str, ...] = ()
    start: Annotated[str, Field(pattern=_HHMM)] | None = None
    end: Annotated[str, Field(pattern=_HHMM)] | None = None

    @model_validator(mode="after")
    def _datatypes_match_kind(self) -> PhaseConfig:
        if self.kind == "generate" and not self.datatypes:
            raise ValueError(
                f"generate phase {self.name!r} names no data types; add datatypes = [...]"
            )
        if self.kind != "generate" and self.datatypes:
            raise ValueError(f"{self.kind} phase {self.name!r} takes no datatypes; remove the key")
        return self

    def minutes(self) -> tuple[int, int]:
        """(start, end) in minutes after midnight; end may be 1440 (24:00)."""
        assert self.start is not None and self.end is not None
        return _minutes(self.start), _minutes(self.end)


class ScheduleConfig(_Section):
    mode: Literal["clock", "sequential"] = "clock"
    backfill: bool = True
    phases: tuple[PhaseConfig, ...] = ()


class Config(_Section):
    service: ServiceConfig = ServiceConfig()
    backend: BackendConfig = BackendConfig()
    gpu: GpuConfig = GpuConfig()
    models: dict[str, ModelConfig]
    datatypes: dict[str, DatatypeConfig]
    validation: ValidationConfig = ValidationConfig()
    dedup: DedupConfig = DedupConfig()
    schedule: ScheduleConfig
    source: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _cross_references(self) -> Config:
        from gen_service.domain.datatypes import REGISTRY

        for name, dtc in self.datatypes.items():
            if name not in REGISTRY:
                raise _KeyProblem(
                    ("datatypes", name),
                    f"unknown data type {name!r}; known types are {', '.join(REGISTRY)}",
                )
            if dtc.model not in self.models:
                raise _KeyProblem(
                    ("datatypes", name, "model"),
                    f"model role {dtc.model!r} is not defined; add a [models.{dtc.model}] "
                    f"table or use one of: {', '.join(self.models) or '(none defined)'}",
                )
            if dtc.min_words:
                from gen_service.domain.checking import rules_for

                try:
                    rules_for(REGISTRY[name], dtc.min_words)
                except KeyError as exc:
                    raise _KeyProblem(
                        ("datatypes", name, "min_words"), f"{exc.args[0]}. Fix: use one of those"
                    ) from None
            if dtc.total_target and dtc.daily_target > dtc.total_target:
                raise _KeyProblem(
                    ("datatypes", name, "daily_target"),
                    f"daily_target {dtc.daily_target} exceeds total_target {dtc.total_target}; "
                    "lower the daily target or raise the total",
                )
        if self.validation.model not in self.models and any(
            p.kind == "validate" for p in self.schedule.phases
        ):
            raise _KeyProblem(
                ("validation", "model"),
                f"model role {self.validation.model!r} is not defined; add a "
                f"[models.{self.validation.model}] table or name an existing role",
            )
        if not self.schedule.phases:
            raise _KeyProblem(
                ("schedule", "phases"),
                'no phases; add at least one [[schedule.phases]] table with kind = "generate"',
            )
        names: set[str] = set()
        for i, phase in enumerate(self.schedule.phases):
            if phase.name in names:
                raise _KeyProblem(
                    ("schedule", "phases", i, "name"),
                    f"phase name {phase.name!r} is used twice; give each phase its own name",
                )
            names.add(phase.name)
            for dtn in phase.datatypes:
                if dtn not in self.datatypes:
                    raise _KeyProblem(
                        ("schedule", "phases", i, "datatypes"),
                        f"phase {phase.name!r} names data type {dtn!r}, which has no "
                        f"[datatypes.{dtn}] table; add one or remove it from the phase",
                    )
        if self.schedule.mode == "clock":
            _check_clock_phases(self.schedule.phases)
        problem = _not_built_problems(self)
        if problem is not None:
            raise problem
        return self

    # -- convenience -------------------------------------------------------------------------

    def model_for(self, datatype: str) -> ModelConfig:
        return self.models[self.datatypes[datatype].model]

    def generate_datatypes(self) -> list[str]:
        """Data types that some generate phase produces, in schedule order, each once."""
        seen: dict[str, None] = {}
        for phase in self.schedule.phases:
            for dtn in phase.datatypes:
                seen.setdefault(dtn)
        return list(seen)


def listen_address(value: str) -> tuple[str, int]:
    """``"host:port"``, ``"[v6 address]:port"`` or ``":port"`` (127.0.0.1) as (host, port);
    a ValueError that says how to write it otherwise."""
    fix = (
        'Fix: write "host:port" (e.g. "127.0.0.1:9464"), ":9464" for 127.0.0.1, or "" to '
        "turn the endpoint off"
    )
    host, colon, port = value.rpartition(":")
    if not colon or "/" in value or any(c.isspace() for c in value):
        raise ValueError(f"not a listening address. {fix}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f'an IPv6 address needs brackets, e.g. "[::1]:9464". {fix}')
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"the port must be a number from 1 to 65535. {fix}")
    return host or "127.0.0.1", int(port)


# Keys of the format whose feature is not built yet: (table path, key) -> what the key would
# turn on. Accepted at their default, refused otherwise. Remove an entry when its feature lands.
NOT_BUILT: dict[tuple[str, str], str] = {}


def _not_built_problems(cfg: Config) -> _KeyProblem | None:
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
            return _KeyProblem(
                (*loc, key),
                f"{value!r} would turn on {feature}, which this version of gen-service does not "
                f"have yet. Fix: remove the key (or set it to its default, "
                f"{field.get_default(call_default_factory=True)!r})",
            )
    return None


def config_warnings(cfg: Config) -> list[str]:
    """What is legal but probably not what the operator means; printed by check-config and
    logged at start-up."""
    warnings: list[str] = []
    if any(p.kind == "validate" for p in cfg.schedule.phases):
        judge = cfg.models[cfg.validation.model].name
        same = sorted(d for d, dtc in cfg.datatypes.items() if cfg.models[dtc.model].name == judge)
        if same:
            warnings.append(
                f"[validation] model {judge!r} also writes {', '.join(same)}: a model judging "
                "its own samples is lenient with its own habits; prefer another model"
            )
    return warnings


class _KeyProblem(ValueError):
    """Raised inside validators to point at a key other than the one being validated."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def _check_clock_phases(phases: tuple[PhaseConfig, ...]) -> None:
    covered: dict[int, str] = {}
    for i, phase in enumerate(phases):
        if phase.start is None or phase.end is None:
            raise _KeyProblem(
                ("schedule", "phases", i, "start" if phase.start is None else "end"),
                f'clock phase {phase.name!r} needs start and end ("HH:MM", end may be '
                '"24:00"); add them, or set [schedule] mode = "sequential"',
            )
        start, end = phase.minutes()
        if start == end:
            raise _KeyProblem(
                ("schedule", "phases", i, "end"),
                f"phase {phase.name!r} starts and ends at {phase.start}; give it a length",
            )
        span = range(start, end) if end > start else [*range(start, 1440), *range(0, end)]
        for minute in span:
            other = covered.get(minute % 1440)
            if other is not None:
                raise _KeyProblem(
                    ("schedule", "phases", i, "start"),
                    f"phase {phase.name!r} ({phase.start}-{phase.end}) overlaps phase "
                    f"{other!r} at {minute // 60 % 24:02d}:{minute % 60:02d}; move one of them",
                )
            covered[minute % 1440] = phase.name


# -- loading ---------------------------------------------------------------------------------


def load_config(path: Path, *, check_prompts: bool = True) -> Config:
    """Read, validate and resolve one config file; raise ConfigError on any problem."""
    raw = read_toml(path)
    cfg = parse_config(raw, path)
    if check_prompts:
        check_templates(cfg)
    return cfg


def parse_config(raw: Mapping[str, Any], path: Path) -> Config:
    """Validate a parsed TOML document; resolve relative paths against the file's folder."""
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        raise _config_error(exc, path) from None
    except _KeyProblem as exc:  # pragma: no cover - pydantic wraps these; kept for safety
        raise ConfigError(_format(path, exc.loc, exc.message), path=str(path)) from None
    base = path.resolve().parent
    service = cfg.service.model_copy(
        update={
            "db": resolve_path(base, cfg.service.db),
            "prompts_dir": resolve_path(base, cfg.service.prompts_dir),
            "reports_dir": None
            if cfg.service.reports_dir is None
            else resolve_path(base, cfg.service.reports_dir),
        }
    )
    models = {
        role: m.model_copy(update={"path": resolve_path(base, m.path)}) if m.path else m
        for role, m in cfg.models.items()
    }
    return cfg.model_copy(update={"service": service, "models": models, "source": path})


def check_templates(cfg: Config) -> None:
    """Load the prompt library and render one prompt per configured data type."""
    import random

    from gen_service.adapters.prompt_files import load_prompt_library
    from gen_service.domain.datatypes import REGISTRY

    library = load_prompt_library(cfg.service.prompts_dir, list(cfg.datatypes))
    for name, dtc in cfg.datatypes.items():
        spec = REGISTRY[name]
        rng = random.Random(0)
        library.render(
            spec,
            batch_size=dtc.batch_size,
            contexts=spec.sample_contexts(rng, dtc.batch_size, facets=library.facets),
            rng=rng,
        )


def _toml_key(loc: tuple[str | int, ...]) -> str:
    """('datatypes', 'x', 'batch_size') -> '[datatypes.x] batch_size'."""
    parts = [p for p in loc if not (isinstance(p, str) and p.startswith(("function-", "tagged")))]
    if not parts:
        return "(top level)"
    if len(parts) == 1:
        return str(parts[0])
    table = ""
    for p in parts[:-1]:
        table += f"[{p}]" if isinstance(p, int) else (f".{p}" if table else str(p))
    return f"[{table}] {parts[-1]}"


def _format(path: Path, loc: tuple[str | int, ...], problem: str) -> str:
    return f"{path}: {_toml_key(loc)}: {problem}"


_FIXES = {
    "extra_forbidden": (
        "remove it or correct its spelling (the README's Configuration section lists every key)"
    ),
    "missing": "add it",
    "literal_error": "use one of the allowed values",
    "string_pattern_mismatch": 'write times as "HH:MM" (00:00 to 24:00)',
}


def _config_error(exc: ValidationError, path: Path) -> ConfigError:
    lines: list[str] = []
    first_key: str | None = None
    for err in exc.errors():
        loc: tuple[str | int, ...] = tuple(err["loc"])
        ctx_error = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_error, _KeyProblem):
            loc = ctx_error.loc
            message = ctx_error.message
        else:
            message = str(err["msg"]).removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = "unknown key"
            elif err["type"] == "missing":
                message = "required key is missing"
            elif "input" in err and not isinstance(err["input"], dict | list):
                message = f"{err['input']!r}: {message}"
            fix = _FIXES.get(err["type"])
            if fix:
                message = f"{message}. Fix: {fix}"
        if first_key is None:
            first_key = _toml_key(loc)
        lines.append(f"{_toml_key(loc)}: {message}")
    head = f"{path}: invalid configuration: " + lines[0]
    if len(lines) > 1:
        head += "; also " + "; ".join(lines[1:])
    return ConfigError(head + ".", path=str(path), key=first_key)
