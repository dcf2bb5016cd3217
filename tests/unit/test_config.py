"""Settings from SUNDIAL_* variables: defaults, parsing, and one-line refusals."""

from __future__ import annotations

import os

import pytest

from sundial.config import JobDefaults, Settings, load_settings, misspelt_setting


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start each test with no SUNDIAL_* variables from the machine running the suite."""
    for name in list(os.environ):
        if name.startswith("SUNDIAL_"):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    settings = load_settings()

    assert settings.backend_url == "sqlite:///./var/sundial.db"
    assert settings.timezone == "UTC"
    assert settings.max_workers == 10
    assert settings.job_defaults == JobDefaults(
        coalesce=False, max_instances=3, misfire_grace_time=60
    )
    # A fresh install schedules nothing of ours: the demo jobs are opted into.
    assert settings.job_modules == ()
    assert settings.run_retention_days == 30
    assert settings.leader_lease_seconds == 10
    assert settings.shutdown_grace_seconds == 30
    assert settings.metrics_port == 9100
    assert settings.api_token is None
    assert settings.api_url == "http://localhost:8000"
    assert settings.log_format == "json"
    assert settings.log_level == "INFO"


def test_job_defaults_are_apscheduler_job_defaults() -> None:
    assert load_settings().job_defaults.model_dump() == {
        "coalesce": False,
        "max_instances": 3,
        "misfire_grace_time": 60,
    }


def test_values_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUNDIAL_BACKEND_URL", "postgresql+psycopg://sundial:pw@db/sundial")
    monkeypatch.setenv("SUNDIAL_TIMEZONE", "Europe/Berlin")
    monkeypatch.setenv("SUNDIAL_MAX_WORKERS", "25")
    monkeypatch.setenv("SUNDIAL_SHUTDOWN_GRACE_SECONDS", "2.5")
    monkeypatch.setenv("SUNDIAL_API_TOKEN", "k3y-0123456789abcdef")
    monkeypatch.setenv("SUNDIAL_LOG_FORMAT", "console")
    monkeypatch.setenv("SUNDIAL_LOG_LEVEL", "debug")

    settings = load_settings()

    assert settings.backend_url == "postgresql+psycopg://sundial:pw@db/sundial"
    assert settings.timezone == "Europe/Berlin"
    assert settings.max_workers == 25
    assert settings.shutdown_grace_seconds == 2.5
    assert settings.api_token == "k3y-0123456789abcdef"
    assert settings.log_format == "console"
    assert settings.log_level == "DEBUG"


def test_job_modules_is_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUNDIAL_JOB_MODULES", " myapp.jobs , myapp.reports,,other.jobs ")

    assert load_settings().job_modules == ("myapp.jobs", "myapp.reports", "other.jobs")


def test_a_single_job_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUNDIAL_JOB_MODULES", "myapp.jobs")

    assert load_settings().job_modules == ("myapp.jobs",)


def test_nested_job_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUNDIAL_JOB_DEFAULTS__MAX_INSTANCES", "1")
    monkeypatch.setenv("SUNDIAL_JOB_DEFAULTS__COALESCE", "true")

    defaults = load_settings().job_defaults

    assert defaults.max_instances == 1
    assert defaults.coalesce is True
    assert defaults.misfire_grace_time == 60  # the one not set keeps its default


def test_empty_api_token_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUNDIAL_API_TOKEN", "")

    assert load_settings().api_token is None


@pytest.mark.parametrize("url", ["redis://cache:6379/0", "sqlite:////data/sundial.db"])
def test_other_backends_are_accepted(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("SUNDIAL_BACKEND_URL", url)

    assert load_settings().backend_url == url


def test_settings_are_frozen() -> None:
    settings = Settings()

    with pytest.raises(ValueError, match="frozen"):
        settings.max_workers = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("SUNDIAL_MAX_WORKERS", "abc", "valid integer"),
        ("SUNDIAL_MAX_WORKERS", "0", "greater than or equal to 1"),
        ("SUNDIAL_TIMEZONE", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
        ("SUNDIAL_BACKEND_URL", "mysql://x", "unsupported backend 'mysql'"),
        ("SUNDIAL_API_TOKEN", "changeme", "at least 16 characters"),
        ("SUNDIAL_API_TOKEN", "short-token", "at least 16 characters"),
        ("SUNDIAL_LOG_FORMAT", "xml", "'json' or 'console'"),
        ("SUNDIAL_LOG_LEVEL", "LOUD", "'DEBUG'"),
        ("SUNDIAL_METRICS_PORT", "70000", "less than or equal to 65535"),
        ("SUNDIAL_LEADER_LEASE_SECONDS", "0", "greater than 0.5"),
        ("SUNDIAL_RUN_RETENTION_DAYS", "-1", "greater than or equal to 1"),
        ("SUNDIAL_JOB_DEFAULTS__MAX_INSTANCES", "0", "greater than or equal to 1"),
        ("SUNDIAL_JOB_DEFAULTS__COALESCE", "maybe", "valid boolean"),
        ("SUNDIAL_JOB_DEFAULTS", "{not json", ""),
    ],
)
def test_bad_value_exits_with_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
    reason: str,
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(SystemExit) as exited:
        load_settings()

    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert variable in lines[0]
    assert reason in lines[0]


def test_bad_token_line_says_how_to_make_one_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SUNDIAL_API_TOKEN", "tooShortSecret")

    with pytest.raises(SystemExit):
        load_settings()

    line = capsys.readouterr().err
    assert "secrets.token_urlsafe" in line
    assert "tooShortSecret" not in line


def test_kubernetes_service_links_and_other_parts_variables_are_not_taken_for_typos(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # what Kubernetes sets for Services named sundial-api, and what the stack's files read
    monkeypatch.setenv("SUNDIAL_API_PORT", "tcp://10.0.0.7:8000")
    monkeypatch.setenv("SUNDIAL_API_SERVICE_HOST", "10.0.0.7")
    monkeypatch.setenv("SUNDIAL_API_PORT_8000_TCP_ADDR", "10.0.0.7")
    monkeypatch.setenv("SUNDIAL_GRAFANA_URL", "http://grafana:3000")
    monkeypatch.setenv("SUNDIAL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

    assert misspelt_setting(os.environ) is None
    assert load_settings().api_url == "http://localhost:8000"


def test_a_nested_setting_misspelt_names_the_nested_variable() -> None:
    assert misspelt_setting({"SUNDIAL_JOB_DEFAULTS__MAX_INSTANCE": "2"}) == (
        "SUNDIAL_JOB_DEFAULTS__MAX_INSTANCE",
        "SUNDIAL_JOB_DEFAULTS__MAX_INSTANCES",
    )


def test_the_read_token_is_held_to_the_rules_of_the_api_token() -> None:
    with pytest.raises(ValueError, match="at least 16 characters"):
        Settings(api_read_token="changeme")
    with pytest.raises(ValueError, match="must differ from SUNDIAL_API_TOKEN"):
        Settings(api_token="same-token-0123456789", api_read_token="same-token-0123456789")
    assert Settings(api_read_token="read-token-0123456789").reads_protected
