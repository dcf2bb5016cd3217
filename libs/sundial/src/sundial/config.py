"""Settings for every Sundial process, read from ``SUNDIAL_*`` environment variables.

Nothing else in Sundial reads ``os.environ``: each process builds one :class:`Settings`
at start-up (see :func:`load_settings`) and passes it down.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Mapping
from functools import lru_cache
from typing import Annotated, Literal, NoReturn
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from sundial.constants import DEFAULT_QUEUE, MAX_ID_CHARS
from sundial.timezones import check_timezone

DEFAULT_BACKEND_URL = "sqlite:///./var/sundial.db"
DEFAULT_JOB_MODULES: tuple[str, ...] = ()
SUPPORTED_SCHEMES = ("postgresql+psycopg://", "postgresql://", "redis://", "rediss://", "sqlite://")
PLACEHOLDER_TOKENS = frozenset({"changeme", "change-me", "secret", "token", "xxx"})
MIN_TOKEN_LENGTH = 16
PREFIX = "SUNDIAL_"
#: ``SUNDIAL_*`` names that belong to other parts of a deployment (the compose stack, alert
#: delivery, CI and the test suite), not to a Sundial process's settings
FOREIGN_PREFIXES = (
    "SUNDIAL_ALERT_",
    "SUNDIAL_BENCH_",
    "SUNDIAL_CHAOS_",
    "SUNDIAL_CI_",
    "SUNDIAL_IMAGE_",
    "SUNDIAL_TEST_",
)
FOREIGN_NAMES = frozenset(
    {
        "SUNDIAL_FAILOVER_REPORT",
        "SUNDIAL_GRAFANA_URL",
        "SUNDIAL_JOBS_DIR",
        "SUNDIAL_RUNBOOK_URL",
        "SUNDIAL_UI_SCREENSHOTS",
    }
)
#: what Kubernetes sets for a Service named ``sundial-…`` in the same namespace
_SERVICE_LINK = re.compile(r"_SERVICE_(HOST|PORT(_\w+)?)$|_PORT_\d+_(TCP|UDP|SCTP)(_\w+)?$")
#: how alike a name must be to a setting's to be taken for a misspelling of it
MISSPELLING_CUTOFF = 0.8


class JobDefaults(BaseModel):
    """APScheduler job defaults applied to jobs that do not set their own."""

    coalesce: bool = False
    max_instances: int = Field(default=3, ge=1)
    misfire_grace_time: int = Field(default=60, ge=1)


class Settings(BaseSettings):
    """Configuration of a Sundial process; every variable is listed in docs/configuration.md."""

    model_config = SettingsConfigDict(
        env_prefix="SUNDIAL_",
        env_nested_delimiter="__",
        extra="ignore",
        frozen=True,
    )

    backend_url: str = DEFAULT_BACKEND_URL
    timezone: str = "UTC"
    max_workers: int = Field(default=10, ge=1, le=1000)
    job_defaults: JobDefaults = JobDefaults()
    job_modules: Annotated[tuple[str, ...], NoDecode] = DEFAULT_JOB_MODULES
    run_retention_days: int = Field(default=30, ge=1)
    leader_lease_seconds: float = Field(default=10, gt=0.5, le=600)
    shutdown_grace_seconds: float = Field(default=30, ge=0)
    #: an async job holding the event loop this long is named in a warning; 0 turns it off
    event_loop_blocked_seconds: float = Field(default=0.5, ge=0)
    metrics_port: int = Field(default=9100, ge=0, le=65535)
    metrics_host: str = "0.0.0.0"
    api_token: str | None = None
    api_read_token: str | None = None
    api_url: str = "http://localhost:8000"
    log_format: Literal["json", "console"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    instance_id: str | None = Field(default=None, min_length=1, max_length=MAX_ID_CHARS)
    executor: Literal["local", "queue"] = "local"
    worker_queues: Annotated[tuple[str, ...], NoDecode] = (DEFAULT_QUEUE,)
    worker_concurrency: int = Field(default=10, ge=1, le=1000)
    worker_metrics_port: int = Field(default=9101, ge=0, le=65535)

    @field_validator("backend_url")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if not value.startswith(SUPPORTED_SCHEMES):
            raise ValueError(
                f"unsupported backend {value.split('://')[0]!r}; "
                "use postgresql+psycopg://, redis:// or sqlite:///"
            )
        return value

    _known_timezone = field_validator("timezone")(
        classmethod(lambda cls, value: check_timezone(value))
    )

    @field_validator("executor")
    @classmethod
    def _executor_has_an_engine(cls, value: str, info: ValidationInfo) -> str:
        url = str(info.data.get("backend_url", ""))
        if value == "queue" and url.startswith("sqlite"):
            raise ValueError(
                "the queue executor runs jobs on workers through the backend's task engine, "
                "which needs a Postgres or Redis backend; use 'local' with SQLite"
            )
        return value

    @field_validator("job_modules", "worker_queues", mode="before")
    @classmethod
    def _split_modules(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("api_token", "api_read_token")
    @classmethod
    def _real_token(cls, value: str | None) -> str | None:
        if not value:
            return None
        if value.lower() in PLACEHOLDER_TOKENS or len(value) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"a token must be at least {MIN_TOKEN_LENGTH} characters and not a "
                "placeholder; generate one with: python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))'"
            )
        return value

    @field_validator("api_read_token")
    @classmethod
    def _read_token_differs(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and value == info.data.get("api_token"):
            raise ValueError(
                "the read token must differ from SUNDIAL_API_TOKEN, or readers could change jobs"
            )
        return value

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return check_api_url(value)

    @property
    def reads_protected(self) -> bool:
        """Whether reading jobs, runs and the UI needs a token."""
        return self.api_read_token is not None


def check_api_url(value: str) -> str:
    """``value`` if it is an http(s) address with a host, else a ValueError saying so."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as error:
        raise ValueError(f"{value!r} is not a URL: {error}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http:// or https:// URL with a host")
    return value


class ConfigurationError(Exception):
    """A setting that cannot work, found after the settings were read (e.g. a port in use)."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"invalid configuration: {variable}: {problem}")
        self.variable = variable


def exit_on_configuration_error(error: ConfigurationError) -> NoReturn:
    """Print the error's one line and exit with status 2 (for entrypoints)."""
    print(error, file=sys.stderr)  # noqa: T201
    raise SystemExit(2)


def setting_names() -> frozenset[str]:
    """Every environment variable :class:`Settings` reads."""
    names = set()
    for name, field in Settings.model_fields.items():
        variable = PREFIX + name.upper()
        names.add(variable)
        nested = field.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            names.update(f"{variable}__{inner.upper()}" for inner in nested.model_fields)
    return frozenset(names)


def _foreign(name: str, value: str) -> bool:
    if name in FOREIGN_NAMES or name.startswith(FOREIGN_PREFIXES):
        return True
    # a Service link's plain ``…_PORT`` is an address such as tcp://10.0.0.7:8000
    return bool(_SERVICE_LINK.search(name)) or (
        name.endswith("_PORT") and value.startswith(("tcp://", "udp://", "sctp://"))
    )


def misspelt_setting(environ: Mapping[str, str]) -> tuple[str, str] | None:
    """The first ``SUNDIAL_*`` variable that looks like a misspelt setting, with that setting.

    A name alike to no setting may be someone else's (a job's own variable, a platform's)
    and is left alone; a near miss is a setting that would silently not apply.
    """
    known = setting_names()
    for name in sorted(environ):
        if not name.startswith(PREFIX) or name in known or _foreign(name, environ[name]):
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=MISSPELLING_CUTOFF)
        if close:
            return name, close[0]
    return None


def format_validation_error(error: ValidationError) -> str:
    """One line naming the variable that is wrong and why."""
    first = error.errors()[0]
    path = "__".join(str(part) for part in first["loc"]).upper()
    message = first["msg"].removeprefix("Value error, ")
    return f"invalid configuration: SUNDIAL_{path}: {message}"


def load_settings() -> Settings:
    """Build settings from the environment or exit with one clear line (for entrypoints)."""
    misspelt = misspelt_setting(os.environ)
    if misspelt is not None:
        name, meant = misspelt
        exit_on_configuration_error(
            ConfigurationError(name, f"no such setting; did you mean {meant}?")
        )
    try:
        return Settings()
    except ValidationError as error:
        message = format_validation_error(error)
    except SettingsError as error:
        field = re.search(r'field "(\w+)"', str(error))
        name = f"SUNDIAL_{field.group(1).upper()}" if field else "environment"
        message = f"invalid configuration: {name}: not valid JSON or not a valid value"
    print(message, file=sys.stderr)  # noqa: T201
    raise SystemExit(2)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, built once on first use."""
    return load_settings()
