"""The configuration's pydantic tree: one frozen model per TOML table, each with the checks of
its own keys, and :class:`Config`, their root, whose checks across tables live in
:mod:`gen_service.config_rules`. :mod:`gen_service.config` loads a file into it."""

from __future__ import annotations

import datetime as dt
import os
import zoneinfo
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gen_service import resources
from gen_service.config_file import DEFAULT_DB
from gen_service.config_rules import check_references

_HHMM = r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServiceConfig(Section):
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
    # Processes that check batches beside the event loop; 0: the event loop checks them.
    check_workers: Annotated[int, Field(ge=0, le=64)] = 0

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


class BackendConfig(Section):
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


class GpuConfig(Section):
    vram_gb: Annotated[float, Field(gt=0)] | None = None  # None: read it from nvidia-smi
    reserve_gb: Annotated[float, Field(ge=0)] = 0.5


class ModelConfig(Section):
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


class DatatypeConfig(Section):
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


class ValidationConfig(Section):
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


class DedupConfig(Section):
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


class PhaseConfig(Section):
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


class ScheduleConfig(Section):
    mode: Literal["clock", "sequential"] = "clock"
    backfill: bool = True
    phases: tuple[PhaseConfig, ...] = ()


class Config(Section):
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
        check_references(self)
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


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)
