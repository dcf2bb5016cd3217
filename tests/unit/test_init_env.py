"""``deploy/compose/init-env.py``: the first ``make up`` writes ``.env`` with secrets of its own."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_modules import DEPLOY

ROOT = DEPLOY.parent
SCRIPT = DEPLOY / "compose" / "init-env.py"
EXAMPLE = ROOT / ".env.example"
SECRETS = ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "SUNDIAL_API_TOKEN")


def init_env(target: Path, example: Path = EXAMPLE) -> subprocess.CompletedProcess[str]:
    # -S: no site-packages, so the script must make do with the standard library
    return subprocess.run(
        [sys.executable, "-S", str(SCRIPT), "--example", str(example), str(target)],
        capture_output=True,
        text=True,
        check=False,
    )


def values(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def test_every_secret_is_random_and_the_urls_carry_the_passwords(tmp_path: Path) -> None:
    first, second = tmp_path / "one.env", tmp_path / "two.env"
    assert init_env(first).returncode == 0
    assert init_env(second).returncode == 0
    one, two = values(first), values(second)
    for name in SECRETS:
        assert len(one[name]) >= 32, name
        assert one[name] != two[name], f"{name} is the same in two stacks"
    assert one["SUNDIAL_BACKEND_URL"] == (
        f"postgresql+psycopg://sundial:{one['POSTGRES_PASSWORD']}@postgres:5432/sundial"
    )
    assert one["REDIS_BACKEND_URL"] == f"redis://:{one['REDIS_PASSWORD']}@redis:6379/0"
    assert not [value for value in one.values() if "${" in value]


def test_everything_but_the_secrets_is_the_example(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    init_env(target)
    example, written = values(EXAMPLE), values(target)
    assert written.keys() == example.keys()
    changed = {name for name in example if example[name] != written[name]}
    assert changed == {*SECRETS, "SUNDIAL_BACKEND_URL", "REDIS_BACKEND_URL"}


def test_the_file_is_for_its_owner_only_and_says_where_the_token_is(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    done = init_env(target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert f"SUNDIAL_API_TOKEN in {target}" in done.stdout


def test_an_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    target.write_text("POSTGRES_PASSWORD=mine\n")
    done = init_env(target)
    assert done.returncode == 0
    assert target.read_text() == "POSTGRES_PASSWORD=mine\n"
    assert "leaving it as it is" in done.stdout


@pytest.mark.parametrize(
    ("example", "message"),
    [
        ("POSTGRES_PASSWORD=\nURL=x://${NOPE}@db\n", "URL refers to ${NOPE}, which is not set"),
        ("POSTGRES_PASSWORD=\n", "the example file does not set GRAFANA_ADMIN_PASSWORD"),
    ],
)
def test_an_example_that_cannot_be_filled_writes_nothing(
    tmp_path: Path, example: str, message: str
) -> None:
    source = tmp_path / "example.env"
    source.write_text(example)
    target = tmp_path / ".env"
    done = init_env(target, source)
    assert done.returncode != 0 and message in done.stderr
    assert not target.exists()
