"""The API serves the alert runbook: every alert's runbook link lands on its section."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from deploy_modules import load_deploy_module
from fakes import FakeBackend
from fastapi.testclient import TestClient

from sundial.config import Settings
from sundial_api.main import create_app
from sundial_api.routes.runbook import anchor, render

rules = load_deploy_module("generate_rules", "prometheus/generate_rules.py")


@pytest.fixture(scope="module")
def page() -> Iterator[str]:
    settings = Settings(backend_url="sqlite:///unused.db")
    with TestClient(create_app(settings, backend=FakeBackend())) as client:
        response = client.get("/runbook")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    yield response.text


def test_every_alerts_runbook_link_has_its_section(page: str) -> None:
    ids = set(re.findall(r'<h2 id="([^"]+)">', page))
    for group in rules.GROUPS:
        for rule in group.rules:
            if isinstance(rule, rules.Alert):
                _, fragment = rule.annotations["runbook_url"].split("#")
                assert fragment in ids, f"{rule.alert}: no section #{fragment}"


def test_the_section_of_an_alert_holds_its_text(page: str) -> None:
    section = page.split('<h2 id="sundialjoboverdue">', 1)[1].split("<h2", 1)[0]
    assert section.startswith("SundialJobOverdue</h2>")
    assert "<strong>Means.</strong>" in section


def test_anchors_are_the_ones_github_gives_headings() -> None:
    assert anchor("SundialJobFailed") == "sundialjobfailed"
    assert anchor("Sundial alert runbook") == "sundial-alert-runbook"
    assert anchor("What `make up` does, step 2") == "what-make-up-does-step-2"


def test_html_in_the_markdown_is_shown_as_text() -> None:
    assert "<script>" not in render("# T\n\n<script>alert(1)</script>\n")
