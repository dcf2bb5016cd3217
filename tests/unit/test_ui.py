"""The web UI against an in-memory backend: pages, filters, paging, login, CSRF, escaping,
actions and the live feed (a real server, read as a browser's EventSource reads it)."""

from __future__ import annotations

import html
import itertools
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from api_harness import finish_first, serving
from fakes import FakeBackend
from fastapi.testclient import TestClient
from markupsafe import escape
from records import leader, make_job, make_run

from sundial.config import Settings
from sundial.models import (
    CommandKind,
    CommandState,
    Instance,
    InstanceRole,
    JobOptions,
    JobState,
    JobView,
    Outcome,
    Run,
)
from sundial.triggers import CronSpec
from sundial_api import views
from sundial_api.main import create_app
from sundial_api.ui import routes
from sundial_api.ui.pages import JOBS_PER_PAGE
from sundial_api.ui.session import COOKIE_NAME

TOKEN = "ui-test-token-0123456789abcdef"
SCRIPT_NAME = "<script>alert('owned')</script>"
TRACEBACK = 'Traceback (most recent call last):\n  File "jobs.py", line 3\nOSError: <disk full>'


def job(job_id: str, **changes: Any) -> JobView:
    """A catalog entry due 5 minutes from now (pages show times relative to the clock)."""
    return make_job(job_id, now=datetime.now(UTC), **changes)


def run(job_id: str, outcome: Outcome, minutes_ago: float, **changes: Any) -> Run:
    return make_run(job_id, outcome, minutes_ago, now=datetime.now(UTC), **changes)


def settings(token: str | None = TOKEN) -> Settings:
    return Settings(api_token=token, backend_url="sqlite:///unused.db", leader_lease_seconds=3)


@pytest.fixture
def backend() -> FakeBackend:
    fake = FakeBackend()
    fake.save_jobs(
        [
            job(
                "daily_reports",
                name="Daily report generation",
                options=JobOptions(tags=("reports",), critical=True),
            ),
            job("sync_inventory", options=JobOptions(tags=("inventory",))),
            job("cleanup", state=JobState.PAUSED, next_run_time=None),
        ]
    )
    fake.save_runs(
        [
            run("daily_reports", Outcome.SUCCESS, 30),
            run("sync_inventory", Outcome.FAILURE, 20, error_type="OSError"),
            run(
                "sync_inventory",
                Outcome.FAILURE,
                10,
                error_type="OSError",
                error_message="warehouse API answered 502",
                traceback=TRACEBACK,
            ),
        ]
    )
    fake.heartbeat(leader(age_seconds=0))
    return fake


@contextmanager
def client_for(backend: FakeBackend, **options: Any) -> Iterator[TestClient]:
    app = create_app(settings(options.pop("token", TOKEN)), backend=backend)
    with TestClient(app, **options) as client:
        yield client


@pytest.fixture
def client(backend: FakeBackend) -> Iterator[TestClient]:
    with client_for(backend) as client:
        yield client


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "no CSRF field on the page"
    return found.group(1)


def log_in(client: TestClient, token: str = TOKEN) -> httpx.Response:
    form = client.get("/ui/login")
    return client.post(
        "/ui/login",
        data={"token": token, "csrf_token": csrf_of(form.text), "next": "/ui/jobs"},
        follow_redirects=False,
    )


def htmx_post(client: TestClient, path: str, csrf: str) -> httpx.Response:
    """A confirmed action as htmx sends it: the CSRF token in a header."""
    return client.post(
        path, data={"confirmed": "yes"}, headers={"HX-Request": "true", "X-CSRF-Token": csrf}
    )


def row(page: str, job_id: str) -> str:
    found = re.search(rf'<tr id="job-{re.escape(job_id)}".*?</tr>', page, re.DOTALL)
    assert found, f"no row for {job_id}"
    return found.group(0)


def text(fragment: str) -> str:
    """What a reader sees: tags dropped, entities decoded, white space collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def finish_commands(backend: FakeBackend, state: CommandState, reason: str | None) -> None:
    """Play the leader, in a thread, while a route waits for the command."""
    threading.Thread(target=finish_first, args=(backend, state, reason), daemon=True).start()


# pages ----------------------------------------------------------------------------------
def test_ui_root_leads_to_the_jobs_page(client: TestClient) -> None:
    response = client.get("/ui", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/ui/jobs"


def test_jobs_page_shows_state_trigger_next_and_last_run_streak_and_critical_flag(
    client: TestClient, backend: FakeBackend
) -> None:
    page = client.get("/ui/jobs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    # the page asks for its counts after itself
    assert 'hx-get="/ui/job-counts"' in page.text
    assert text(client.get("/ui/job-counts").text) == "3 jobs: 2 scheduled, 1 paused."

    reports = text(row(page.text, "daily_reports"))
    assert "Daily report generation" in reports and "critical" in reports
    assert "scheduled" in reports and "cron '*/5 * * * *' (UTC)" in reports
    assert re.search(r"in [45] min", reports), reports  # next run, relative
    due = backend.get_job("daily_reports")
    assert due is not None and due.next_run_time is not None
    assert due.next_run_time.strftime("%Y-%m-%d %H:%M:%S UTC") in reports  # ... and absolute
    assert "success 2.00 s" in reports and "30 min ago" in reports

    inventory = text(row(page.text, "sync_inventory"))
    assert "failure" in inventory and "2 failed in a row" in inventory
    assert "critical" not in inventory

    cleanup = text(row(page.text, "cleanup"))
    assert "paused" in cleanup and "never ran" in cleanup and "Resume" in cleanup


def test_jobs_page_shows_a_running_job_as_running(client: TestClient, backend: FakeBackend) -> None:
    backend.save_runs([run("daily_reports", Outcome.RUNNING, 0.5)])
    reports = text(row(client.get("/ui/jobs").text, "daily_reports"))
    assert "running since" in reports and "success" not in reports


@pytest.mark.parametrize(
    ("query", "shown"),
    [
        ("state=paused", {"cleanup"}),
        ("state=scheduled", {"daily_reports", "sync_inventory"}),
        ("tag=inventory", {"sync_inventory"}),
        ("outcome=failure", {"sync_inventory"}),
        ("outcome=success", {"daily_reports"}),
        ("q=REPORT", {"daily_reports"}),  # the name, any case
        ("q=sync_inv", {"sync_inventory"}),  # the id
        ("q=example:clean", {"cleanup"}),  # the function
        ("q=inventory&outcome=success", set()),
        ("state=&tag=&outcome=&q=", {"daily_reports", "sync_inventory", "cleanup"}),
    ],
)
def test_jobs_page_filters(client: TestClient, query: str, shown: set[str]) -> None:
    page = client.get(f"/ui/jobs?{query}").text
    assert set(re.findall(r'<tr id="job-([^"]+)"', page)) == shown


def test_an_unknown_filter_value_is_refused_with_the_choices(client: TestClient) -> None:
    page = client.get("/ui/jobs?state=sleeping")
    assert page.status_code == 400
    assert "state &#39;sleeping&#39; is not one of: scheduled, paused" in page.text


def test_jobs_page_pages_by_cursor(backend: FakeBackend) -> None:
    backend.save_jobs([job(f"bulk_{index:03d}") for index in range(120)])
    with client_for(backend) as client:
        seen: list[str] = []
        url: str | None = "/ui/jobs?q=bulk"
        pages = 0
        while url:
            page = client.get(url).text
            seen += re.findall(r'<tr id="job-([^"]+)"', page)
            pages += 1
            assert ("First page" in page) is (pages > 1)
            following = re.search(r'<a href="([^"]+)" rel="next">Next page</a>', page)
            url = html.unescape(following.group(1)) if following else None
        assert pages == 3
        assert seen == [f"bulk_{index:03d}" for index in range(120)]
        assert len(seen[:JOBS_PER_PAGE]) == JOBS_PER_PAGE


def test_a_search_reads_a_bounded_part_of_the_catalog_per_page(
    backend: FakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the only match lies past the first scan's reach: the first page says so, and
    # searching on finds it
    monkeypatch.setattr(views, "SEARCH_SCAN_LIMIT", 500)
    backend.save_jobs([job(f"bulk_{index:04d}") for index in range(1_200)])
    backend.save_jobs([job("bulk_1100", name="Needle")])
    with client_for(backend) as client:
        first = client.get("/ui/jobs?q=needle").text
        assert '<tr id="job-' not in first
        assert "more jobs may match further on" in first
        url = "/ui/jobs?q=needle"
        for _ in range(3):
            page = client.get(url).text
            if 'id="job-bulk_1100"' in page:
                break
            following = re.search(r'<a href="([^"]+)" rel="next">Search further</a>', page)
            assert following, "the search stopped without a way on"
            url = html.unescape(following.group(1))
        else:
            raise AssertionError("the search never reached the match")


def test_job_page_shows_schedule_next_fire_times_and_run_history(client: TestClient) -> None:
    page = client.get("/ui/jobs/sync_inventory")
    assert page.status_code == 200
    shown = text(page.text)
    assert "cron '*/5 * * * *' (UTC)" in shown
    fires = re.findall(r"<li>.*?datetime=\"([^\"]+)\"", page.text)
    moments = [datetime.fromisoformat(value) for value in fires]
    assert len(moments) == 4 and all(
        b - a == timedelta(minutes=5) for a, b in itertools.pairwise(moments)
    )
    history = page.text[page.text.index('<tbody id="job-runs"') :]
    assert history.count('<tr id="run-') == 2
    assert "OSError" in history and "warehouse API answered 502" in history
    assert "2.00 s" in history and "<code>sched-1</code>" in history
    assert str(escape(TRACEBACK)) in history
    assert "2 failed in a row" in shown


def test_job_page_filters_its_history_by_outcome(client: TestClient, backend: FakeBackend) -> None:
    backend.save_runs([run("sync_inventory", Outcome.SUCCESS, 5)])
    page = client.get("/ui/jobs/sync_inventory?outcome=success").text
    history = page[page.index('<tbody id="job-runs"') :]
    assert history.count('<tr id="run-') == 1 and "failure" not in history


def test_unknown_job_and_run_are_404_pages(client: TestClient) -> None:
    for path in ("/ui/jobs/no_such_job", "/ui/runs/no-such-run", "/ui/nowhere"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("text/html")


def test_run_page_shows_timeline_attempts_error_and_traceback(
    client: TestClient, backend: FakeBackend
) -> None:
    first = run("sync_inventory", Outcome.FAILURE, 2, error_type="OSError")
    # the retry: a new run at the same fire time
    second = first.model_copy(
        update={
            "run_id": "retry",
            "attempt": 2,
            "error_message": "disk full",
            "traceback": TRACEBACK,
        }
    )
    backend.save_runs([first, second])
    page = client.get(f"/ui/runs/{second.run_id}")
    assert page.status_code == 200
    shown = text(page.text)
    assert "Due at" in shown and "Started at" in shown and "Ended failure" in shown
    assert "Attempts at this fire time" in shown
    assert f"/ui/runs/{first.run_id}" in page.text
    assert str(escape(TRACEBACK)) in page.text
    assert "<strong>OSError</strong>: disk full" in page.text


def test_instances_page_shows_roles_leader_heartbeat_ages_and_running_runs(
    client: TestClient, backend: FakeBackend
) -> None:
    backend.heartbeat(
        Instance(
            id="sched-2",
            host="host-b",
            pid=7,
            role=InstanceRole.STANDBY,
            version="0.1.0",
            started_at=datetime.now(UTC) - timedelta(hours=1),
            last_seen=datetime.now(UTC) - timedelta(seconds=60),
        )
    )
    running = run("daily_reports", Outcome.RUNNING, 0.2)
    backend.save_runs([running])
    page = client.get("/ui/instances").text
    assert re.search(r"1 alive of 2;\s+leader <code>sched-1</code>", page)
    standby = page[page.index("<code>sched-2</code>") :]
    assert "1 min ago" in text(standby) and "silent" in standby
    assert f"/ui/runs/{running.run_id}" in page


# the banner -----------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/ui/jobs", "/ui/jobs/daily_reports", "/ui/instances"])
def test_every_page_says_when_no_scheduler_is_alive(backend: FakeBackend, path: str) -> None:
    backend.instances.clear()
    with client_for(backend) as client:
        banner = client.get(path).text.split('<div id="banner">')[1].split("</div>")[0]
        assert "No scheduler is alive." in banner and "none is registered" in banner


def test_a_page_says_when_the_backend_is_down(client: TestClient, backend: FakeBackend) -> None:
    backend.down = True
    page = client.get("/ui/jobs")
    assert page.status_code == 503
    assert "Backend down." in page.text and "fake backend is down" in page.text


def test_a_healthy_deployment_shows_no_banner(client: TestClient) -> None:
    banner = client.get("/ui/jobs").text.split('<div id="banner">')[1].split("</div>")[0]
    assert banner.strip() == ""


# escaping -------------------------------------------------------------------------------
def test_job_names_errors_and_tracebacks_are_escaped(
    client: TestClient, backend: FakeBackend
) -> None:
    backend.save_jobs([job("xss", name=SCRIPT_NAME, options=JobOptions(tags=("<b>",)))])
    failed = run(
        "xss",
        Outcome.FAILURE,
        1,
        error_message="<img src=x onerror=alert(1)>",
        traceback=SCRIPT_NAME,
    )
    backend.save_runs([failed])
    for path in ("/ui/jobs", "/ui/jobs/xss", f"/ui/runs/{failed.run_id}"):
        page = client.get(path).text
        assert SCRIPT_NAME not in page and "<img src=x" not in page and "<b>" not in page, path
        assert "&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt;" in page, path
    assert "default-src 'self'" in client.get("/ui/jobs").headers["content-security-policy"]


# login and CSRF --------------------------------------------------------------------------
def test_without_login_everything_is_read_only_and_buttons_say_why(client: TestClient) -> None:
    page = client.get("/ui/jobs/daily_reports").text
    buttons = re.findall(r"<button type=\"submit\" id=\"do-[^>]+>", page)
    assert len(buttons) == 3  # run now, pause, remove
    assert all("disabled" in button and "Log in with the API token" in button for button in buttons)
    assert "Log in</a>" in page


def test_login_with_a_wrong_token_is_refused(client: TestClient) -> None:
    response = log_in(client, token="not-the-token-0123456789")
    assert response.status_code == 401
    assert "That is not a token of this server." in response.text
    assert "disabled" in client.get("/ui/jobs").text.split('id="do-run-daily_reports"')[1][:200]


def test_login_sets_a_signed_strict_http_only_cookie_and_enables_the_buttons(
    client: TestClient,
) -> None:
    response = log_in(client)
    assert response.status_code == 303 and response.headers["location"] == "/ui/jobs"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert "Secure" not in cookie  # plain HTTP here
    page = client.get("/ui/jobs").text
    assert "Logged in: operator" in page
    assert "disabled" not in page.split('id="do-run-daily_reports"')[1].split(">")[0]


def test_login_over_https_sets_a_secure_cookie(backend: FakeBackend) -> None:
    with client_for(backend, base_url="https://testserver") as client:
        assert "Secure" in log_in(client).headers["set-cookie"]


def test_a_tampered_or_foreign_session_cookie_counts_as_logged_out(
    backend: FakeBackend,
) -> None:
    with client_for(backend) as client:
        log_in(client)
        stolen = client.cookies[COOKIE_NAME]
        payload, _, signature = stolen.rpartition(".")
        client.cookies.set(COOKIE_NAME, f"{payload}.{signature[::-1]}", path="/ui")
        assert "Logged in" not in client.get("/ui/jobs").text
    # signed for another deployment's token
    with client_for(backend, token="another-token-0123456789abcdef") as other:
        other.cookies.set(COOKIE_NAME, stolen, path="/ui")
        assert "Logged in" not in other.get("/ui/jobs").text


def test_login_returns_only_to_pages_of_the_ui(client: TestClient) -> None:
    for target in ("https://evil.example/ui", "//evil.example/ui", "/api/v1/jobs"):
        client.cookies.clear()
        form = client.get("/ui/login")
        response = client.post(
            "/ui/login",
            data={"token": TOKEN, "csrf_token": csrf_of(form.text), "next": target},
            follow_redirects=False,
        )
        assert response.headers["location"] == "/ui/jobs", target


def test_logout_ends_the_session(client: TestClient) -> None:
    log_in(client)
    page = client.get("/ui/jobs").text
    response = client.post("/ui/logout", data={"csrf_token": csrf_of(page)}, follow_redirects=False)
    assert response.status_code == 303
    assert "Logged in" not in client.get("/ui/jobs").text


def test_without_an_api_token_nobody_can_log_in(backend: FakeBackend) -> None:
    with client_for(backend, token=None) as client:
        page = client.get("/ui/login").text
        assert "Logins are disabled" in page
        assert "Changes are disabled" in client.get("/ui/jobs").text


def test_forms_without_the_csrf_token_are_refused(client: TestClient, backend: FakeBackend) -> None:
    assert client.post("/ui/login", data={"token": TOKEN}).status_code == 403
    log_in(client)
    for data in ({"confirmed": "yes"}, {"confirmed": "yes", "csrf_token": "forged"}):
        response = client.post("/ui/jobs/daily_reports/pause", data=data)
        assert response.status_code == 403
        assert "did not come from this site" in response.text
    forged = htmx_post(client, "/ui/jobs/daily_reports/pause", "forged")
    assert forged.status_code == 403
    assert backend.commands == {}


def test_an_action_needs_a_login_even_with_a_valid_csrf_token(
    client: TestClient, backend: FakeBackend
) -> None:
    page = client.get("/ui/jobs").text
    response = client.post(
        "/ui/jobs/daily_reports/run", data={"csrf_token": csrf_of(page), "confirmed": "yes"}
    )
    assert response.status_code == 403 and "Log in with the API token" in response.text
    assert backend.commands == {}


# actions --------------------------------------------------------------------------------
@pytest.fixture
def operator(client: TestClient) -> tuple[TestClient, str]:
    log_in(client)
    return client, csrf_of(client.get("/ui/jobs").text)


def test_an_htmx_action_queues_the_command_and_shows_that_it_was_applied(
    operator: tuple[TestClient, str], backend: FakeBackend
) -> None:
    client, csrf = operator
    finish_commands(backend, CommandState.APPLIED, None)
    response = htmx_post(client, "/ui/jobs/daily_reports/pause", csrf)
    assert response.status_code == 200
    assert text(response.text) == "Pause daily_reports: applied."
    [command] = backend.commands.values()
    assert (command.kind, command.job_id) == (CommandKind.PAUSE, "daily_reports")


def test_a_rejected_command_shows_the_reason(
    operator: tuple[TestClient, str], backend: FakeBackend
) -> None:
    client, csrf = operator
    finish_commands(backend, CommandState.REJECTED, "function is not registered")
    response = htmx_post(client, "/ui/jobs/daily_reports/run", csrf)
    assert text(response.text) == "Run now daily_reports: rejected: function is not registered."


def test_a_command_still_pending_is_polled_until_it_finishes(
    operator: tuple[TestClient, str], backend: FakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, csrf = operator
    monkeypatch.setattr(routes, "COMMAND_WAIT_SECONDS", 0.1)
    pending = htmx_post(client, "/ui/jobs/daily_reports/resume", csrf).text
    assert "waiting for the scheduler leader" in pending
    poll = re.search(r'hx-get="(/ui/commands/[^"]+)" hx-trigger="load delay:1s"', pending)
    assert poll
    [command] = backend.commands.values()
    backend.finish_command(command.id, CommandState.APPLIED, None)
    done = client.get(poll.group(1)).text
    assert "applied" in done and "hx-get" not in done


def test_without_javascript_an_action_asks_first_then_returns_to_the_page_with_the_result(
    operator: tuple[TestClient, str], backend: FakeBackend
) -> None:
    client, csrf = operator
    asked = client.post(
        "/ui/jobs/daily_reports/run", data={"csrf_token": csrf, "return_to": "/ui/jobs?tag=reports"}
    )
    assert asked.status_code == 200 and backend.commands == {}
    assert "Run “Daily report generation” now, once?" in asked.text
    assert '<input type="hidden" name="confirmed" value="yes">' in asked.text

    finish_commands(backend, CommandState.APPLIED, None)
    done = client.post(
        "/ui/jobs/daily_reports/run",
        data={"csrf_token": csrf, "confirmed": "yes", "return_to": "/ui/jobs?tag=reports"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    [command] = backend.commands.values()
    assert done.headers["location"] == f"/ui/jobs?tag=reports&command={command.id}"
    assert "Run now daily_reports:" in text(client.get(done.headers["location"]).text)


def test_an_action_on_an_unknown_job_is_a_404(operator: tuple[TestClient, str]) -> None:
    client, csrf = operator
    response = htmx_post(client, "/ui/jobs/no_such_job/pause", csrf)
    assert response.status_code == 404 and "no_such_job" in response.text


# the live feed --------------------------------------------------------------------------
@pytest.fixture
def live(backend: FakeBackend, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real server on the fake backend, its feeds ticking fast."""
    monkeypatch.setattr(routes, "POLL_SECONDS", 0.05)
    with serving(create_app(settings(), backend=backend)) as url:
        yield url


class Feed:
    """The data of each ``update`` event of a live page, as the browser receives it."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.iter_lines()

    def next_update(self, within: float = 5) -> str:
        deadline = time.monotonic() + within
        data: list[str] = []
        event = None
        for line in self._lines:
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data.append(line.removeprefix("data: "))
            elif not line and event == "update":
                return "\n".join(data)
            elif not line:
                data, event = [], None
            assert time.monotonic() < deadline, "no update in time"
        raise AssertionError("the feed ended")


def test_live_jobs_feed_sends_the_rows_then_only_what_changed(
    live: str, backend: FakeBackend
) -> None:
    with httpx.stream("GET", f"{live}/ui/live/jobs", timeout=10) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        feed = Feed(response)
        first = feed.next_update()
        assert set(re.findall(r'<tr id="job-([^"]+)" hx-swap-oob="true"', first)) == {
            "daily_reports",
            "sync_inventory",
            "cleanup",
        }
        assert '<div id="banner" hx-swap-oob="true">' in first

        job = backend.get_job("sync_inventory")
        assert job is not None
        backend.save_jobs(
            [job.model_copy(update={"state": JobState.PAUSED, "next_run_time": None})]
        )
        update = feed.next_update()
        # the paused job's row, and not the row of "cleanup", which did not change
        assert 'id="job-sync_inventory"' in update and "Resume" in update
        assert 'id="job-cleanup"' not in update


def test_live_job_feed_adds_a_new_run_at_the_top_and_then_its_outcome(
    live: str, backend: FakeBackend
) -> None:
    with httpx.stream("GET", f"{live}/ui/live/jobs/cleanup", timeout=10) as response:
        feed = Feed(response)
        first = feed.next_update()
        assert '<tbody id="job-runs" hx-swap-oob="true">' in first and "No runs yet" in first
        started = Run(
            job_id="cleanup",
            scheduled_time=datetime.now(UTC),
            started_at=datetime.now(UTC),
            instance_id="sched-1",
        )
        backend.save_runs([started])
        update = feed.next_update()
        # the body showed "no runs yet", so it comes whole, with the running run
        assert f'<tr id="run-{started.run_id}">' in update and "running" in update
        second = started.model_copy(update={"run_id": "second-run", "attempt": 2})
        backend.save_runs([second])
        update = feed.next_update()
        assert '<tbody hx-swap-oob="afterbegin:#job-runs">' in update
        assert '<tr id="run-second-run">' in update
        backend.save_runs(
            [started.finish(Outcome.FAILURE, error=OSError("disk full"), tb=TRACEBACK)]
        )
        update = feed.next_update()
        assert f'<tr id="run-{started.run_id}" hx-swap-oob="true">' in update
        assert "disk full" in update and str(escape(TRACEBACK)) in update


def test_live_feed_says_when_the_backend_goes_down_and_comes_back(
    live: str, backend: FakeBackend
) -> None:
    with httpx.stream("GET", f"{live}/ui/live/instances", timeout=10) as response:
        feed = Feed(response)
        feed.next_update()
        backend.down = True
        down = feed.next_update()
        assert "Backend down." in down and 'id="instances"' not in down
        backend.down = False
        back = feed.next_update()
        assert "Backend down." not in back.split("</div>")[0]


def test_live_fragments_escape_user_text(live: str, backend: FakeBackend) -> None:
    backend.save_jobs([job("xss", name=SCRIPT_NAME, trigger=CronSpec(expression="0 0 * * *"))])
    with httpx.stream("GET", f"{live}/ui/live/jobs?q=xss", timeout=10) as response:
        update = Feed(response).next_update()
    assert 'id="job-xss"' in update and SCRIPT_NAME not in update
