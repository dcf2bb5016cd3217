"""The web UI in a real headless Chromium, against a real API and scheduler on SQLite.

Chromium is Debian's (``/usr/bin/chromium``; ``.ci/install-chromium.sh`` installs it),
driven by Playwright. Set ``SUNDIAL_UI_SCREENSHOTS=DIR`` to have the tests save the
README's screenshots of the jobs page and a job page there.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import BrowserContext, Dialog, Page, expect, sync_playwright
from test_cli import BIN, clean_env, free_port

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "e2e-ui-token-0123456789abcdef"
E2E_DIR = Path(__file__).resolve().parent
JOB_IDS = ("cleanup_tmp", "daily_reports", "escaped_name", "sync_inventory", "system_maintenance")
#: the readers' zone is not the server's (UTC): pages must show times in the reader's
READER_ZONE = "Europe/Berlin"
START_TIMEOUT = 40.0
#: a run through the scheduler, recorded, then seen by a page re-reading once a second
LIVE_TIMEOUT_MS = 15_000
SCREENSHOTS = os.environ.get("SUNDIAL_UI_SCREENSHOTS")


@dataclass
class Stack:
    url: str
    processes: list[subprocess.Popen[bytes]]


def _wait_until_ready(url: str, processes: list[subprocess.Popen[bytes]]) -> None:
    """The API answers, the leader runs and the catalog holds every job of ui_jobs."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        for process in processes:
            assert process.poll() is None, f"{process.args} exited with {process.returncode}"
        try:
            leader = httpx.get(f"{url}/api/v1/scheduler", timeout=2).json()["leader_present"]
            listed = httpx.get(f"{url}/api/v1/jobs", timeout=2).json()["items"]
            if leader and {job["id"] for job in listed} >= set(JOB_IDS):
                return
        except (httpx.TransportError, KeyError, ValueError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"the API and scheduler were not ready within {START_TIMEOUT}s")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("ui-stack")
    port = free_port()
    env = clean_env(
        SUNDIAL_BACKEND_URL=f"sqlite:///{workdir / 'sundial.db'}",
        SUNDIAL_API_TOKEN=TOKEN,
        SUNDIAL_LEADER_LEASE_SECONDS="3",
        SUNDIAL_LOG_FORMAT="json",
        SUNDIAL_JOB_MODULES="ui_jobs",
        SUNDIAL_METRICS_HOST="127.0.0.1",
        SUNDIAL_METRICS_PORT=str(free_port()),
        PYTHONPATH=str(E2E_DIR),
    )
    processes: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        for name, command in (
            ("scheduler", [sys.executable, "-m", "sundial_scheduler"]),
            ("api", [str(BIN / "sundial-api"), "--host", "127.0.0.1", "--port", str(port)]),
        ):
            log = (workdir / f"{name}.log").open("wb")
            logs.append(log)
            processes.append(
                subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
            )
        url = f"http://127.0.0.1:{port}"
        _wait_until_ready(url, processes)
        yield Stack(url, processes)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        for log in logs:
            log.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    """One Chromium for the module, with a fresh profile."""
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path_factory.mktemp("chromium-profile"),
            executable_path=CHROMIUM,
            args=CHROMIUM_FLAGS,
            headless=True,
            timezone_id=READER_ZONE,
            viewport={"width": 1280, "height": 800},
        )
        context.set_default_timeout(LIVE_TIMEOUT_MS)
        yield context
        context.close()


@pytest.fixture
def page(browser: BrowserContext) -> Iterator[Page]:
    """A page of a logged-out browser that accepts every confirmation it is asked."""
    browser.clear_cookies()
    opened = browser.new_page()
    opened.on("dialog", lambda dialog: dialog.accept())
    yield opened
    opened.close()


def log_in(page: Page, stack: Stack, token: str = TOKEN) -> None:
    page.goto(f"{stack.url}/ui/login?next=/ui/jobs")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Log in").click()


def screenshot(page: Page, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / name), full_page=True)


def test_the_jobs_page_lists_the_jobs(page: Page, stack: Stack) -> None:
    dialogs: list[Dialog] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog))
    # a file that failed to load or a script the page's CSP refused would show here
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.goto(f"{stack.url}/ui")
    expect(page).to_have_title("Jobs · Sundial")
    expect(page.locator(".counts")).to_have_text("5 jobs: 5 scheduled, 0 paused.")
    for job_id in JOB_IDS:
        expect(page.locator(f"#job-{job_id}")).to_be_visible()
    reports = page.locator("#job-daily_reports")
    expect(reports).to_contain_text("Daily report generation")
    expect(reports).to_contain_text("critical")
    expect(reports).to_contain_text("cron '0 6 * * *' (UTC)")
    # 06:00 UTC is 07:00 in Berlin in winter and 08:00 in summer
    expect(reports.locator(".next time")).to_contain_text(re.compile(r"0[78]:00:00"))
    expect(reports.locator(".next time")).not_to_contain_text("UTC")
    # a job named like a script is shown as its name and runs nothing
    expect(page.locator("#job-escaped_name")).to_contain_text("<script>alert('owned')</script>")
    assert dialogs == []
    assert errors == []
    # logged out: read-only, and the buttons say why
    run_now = page.get_by_role("button", name="Run now: Daily report generation")
    expect(run_now).to_be_disabled()
    expect(run_now).to_have_attribute(
        "title", "Log in with the API token to pause, resume, run or remove jobs."
    )


def test_login_with_a_wrong_token_is_refused(page: Page, stack: Stack) -> None:
    log_in(page, stack, token="wrong-token-0123456789abcdef")
    expect(page.get_by_role("alert")).to_have_text("That is not a token of this server.")
    page.goto(f"{stack.url}/ui/jobs")
    expect(page.locator(".account")).to_contain_text("Read-only")
    expect(page.get_by_role("button", name="Run now: Daily report generation")).to_be_disabled()


def test_run_now_shows_the_row_running_then_its_outcome_without_a_reload(
    page: Page, stack: Stack
) -> None:
    log_in(page, stack)
    expect(page).to_have_url(f"{stack.url}/ui/jobs")
    loads: list[object] = []
    page.on("load", lambda loaded: loads.append(loaded))
    row = page.locator("#job-daily_reports")
    expect(row.locator(".last")).to_contain_text("never ran")

    page.get_by_role("button", name="Run now: Daily report generation").click()
    expect(page.locator("#command-result")).to_contain_text("Run now daily_reports: applied")
    expect(row.locator(".last")).to_contain_text("running")
    expect(row.locator(".last")).to_contain_text("success")
    expect(row.locator(".last")).not_to_contain_text("running")
    expect(row.locator(".last .duration")).to_contain_text(" s")
    assert loads == [], "the page reloaded"


def test_pause_hides_the_next_run_on_a_second_open_page(
    page: Page, browser: BrowserContext, stack: Stack
) -> None:
    log_in(page, stack)
    watcher = browser.new_page()
    try:
        watcher.goto(f"{stack.url}/ui/jobs")
        watched = watcher.locator("#job-cleanup_tmp")
        expect(watched.locator(".next time")).to_have_count(1)

        page.goto(f"{stack.url}/ui/jobs/cleanup_tmp")
        page.get_by_role("button", name="Pause: Clean up temporary files").click()
        expect(page.locator("#command-result")).to_contain_text("Pause cleanup_tmp: applied")
        expect(page.locator("#job-status")).to_contain_text("none while paused")

        expect(watched).to_contain_text("paused")
        expect(watched.locator(".next time")).to_have_count(0)
        expect(
            watched.get_by_role("button", name="Resume: Clean up temporary files")
        ).to_be_visible()
    finally:
        watcher.close()


def test_a_failed_runs_traceback_is_shown(page: Page, stack: Stack) -> None:
    log_in(page, stack)
    page.goto(f"{stack.url}/ui/jobs/sync_inventory")
    page.get_by_role("button", name="Run now: Sync inventory").click()
    failed = page.locator("#job-runs tr", has_text="failure").first
    expect(failed).to_contain_text("ConnectionError: warehouse API answered 502")
    failed.get_by_text("Traceback", exact=True).click()
    traceback = failed.locator("pre.traceback")
    expect(traceback).to_be_visible()
    expect(traceback).to_contain_text("Traceback (most recent call last)")
    expect(traceback).to_contain_text('raise ConnectionError("warehouse API answered 502")')
    expect(page.locator("#job-status")).to_contain_text("1 failed in a row")
    screenshot(page, "ui-job.png")

    failed.get_by_role("link").first.click()
    expect(page).to_have_title("Run of Sync inventory · Sundial")
    expect(page.locator("#run-detail pre.traceback")).to_contain_text("ConnectionError")

    page.goto(f"{stack.url}/ui/jobs")
    expect(page.locator("#job-sync_inventory")).to_contain_text("failure")
    screenshot(page, "ui-jobs.png")
