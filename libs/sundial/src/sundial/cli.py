"""The ``sundial`` command: watch and manage jobs through the Sundial API.

It talks to the API at ``SUNDIAL_API_URL`` and sends ``SUNDIAL_API_TOKEN`` for changes.
Tables are for people; ``--json`` prints the API's answer for scripts.

Exit codes: 0 ok; 1 an error, an unhealthy deployment, a rejected command or an
unreachable API; 3 a command still pending when the wait ran out.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn
from zoneinfo import ZoneInfo

import httpx
import typer
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

from sundial.config import check_api_url, load_settings
from sundial.constants import MAX_COMMAND_WAIT_SECONDS, MAX_PAGE_SIZE
from sundial.jobs import parse_duration

EXIT_FAILED = 1
EXIT_PENDING = 3
EXIT_USAGE = 2
#: mutations wait this long for the scheduler to apply them, by default
DEFAULT_WAIT_SECONDS = 10.0
HTTP_TIMEOUT_SECONDS = 10.0
OUTCOME_STYLES = {
    "success": "green",
    "failure": "red",
    "timeout": "red",
    "interrupted": "magenta",
    "missed": "yellow",
    "skipped": "yellow",
    "running": "cyan",
}
STATUS_STYLES = {"healthy": "bold green", "degraded": "bold yellow", "unhealthy": "bold red"}

console = Console()
errors = Console(stderr=True)

app = typer.Typer(
    help="Watch and manage Sundial jobs through the Sundial API.",
    no_args_is_help=True,
    add_completion=False,
)
health_app = typer.Typer(help="Check the deployment's health.", no_args_is_help=True)
jobs_app = typer.Typer(help="List, inspect and change jobs.", no_args_is_help=True)
runs_app = typer.Typer(help="Read run history.", no_args_is_help=True)
workers_app = typer.Typer(help="See the workers that execute runs.", no_args_is_help=True)
app.add_typer(health_app, name="health")
app.add_typer(jobs_app, name="jobs")
app.add_typer(runs_app, name="runs")
app.add_typer(workers_app, name="workers")

JsonOption = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]
WaitOption = Annotated[
    float,
    typer.Option(
        min=0,
        max=MAX_COMMAND_WAIT_SECONDS,
        help="seconds to wait for the scheduler to apply the change",
    ),
]


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    errors.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@dataclass
class Api:
    """A small client of the Sundial HTTP API."""

    url: str
    token: str | None

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        timeout = HTTP_TIMEOUT_SECONDS + float(kwargs.get("params", {}).get("wait", 0))
        try:
            with httpx.Client(base_url=self.url, headers=headers, timeout=timeout) as client:
                response = client.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            fail(
                f"cannot reach the Sundial API at {self.url} ({error or type(error).__name__}); "
                "is it running? Set SUNDIAL_API_URL to its address."
            )
        if response.is_error:
            fail(f"{_error_message(response)} (HTTP {response.status_code})")
        return response.json()

    def pages(self, path: str, params: Mapping[str, Any], limit: int | None) -> Iterator[Any]:
        """Items of a cursor-paged listing, up to ``limit`` (all when None)."""
        cursor: str | None = None
        remaining = limit
        while remaining is None or remaining > 0:
            size = MAX_PAGE_SIZE if remaining is None else min(MAX_PAGE_SIZE, remaining)
            query = {**params, "limit": size, **({"cursor": cursor} if cursor else {})}
            page = self.request("GET", path, params=query)
            yield from page["items"]
            if remaining is not None:
                remaining -= len(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                return


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
        message = body["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return response.text.strip() or response.reason_phrase
    return str(message)


@app.callback()
def main(
    ctx: typer.Context,
    api_url: Annotated[
        str | None,
        typer.Option("--api-url", help="API address [default: SUNDIAL_API_URL]"),
    ] = None,
) -> None:
    """Watch and manage Sundial jobs through the Sundial API."""
    settings = load_settings()
    if api_url is not None:
        try:
            check_api_url(api_url)
        except ValueError as error:
            fail(f"--api-url: {error}", EXIT_USAGE)
    # the API token reads too; a reader's machine may hold only the read token
    token = settings.api_token or settings.api_read_token
    ctx.obj = Api(url=(api_url or settings.api_url).rstrip("/"), token=token)


def api(ctx: typer.Context) -> Api:
    """The API client that the app callback put on the context (subcommands inherit it)."""
    client: Api = ctx.obj
    return client


# formatting -----------------------------------------------------------------------------
def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _span(seconds: float) -> str:
    seconds = abs(seconds)
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}" if seconds >= 10 * size else _two(seconds, size)
    return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"


def _two(seconds: float, size: int) -> str:
    units = {86_400: ("d", 3_600, "h"), 3_600: ("h", 60, "m"), 60: ("m", 1, "s")}
    big, small_size, small = units[size]
    whole, rest = divmod(int(seconds), size)
    part = rest // small_size
    return f"{whole}{big}{part}{small}" if part else f"{whole}{big}"


def when(value: str | None, *, compact: bool = False) -> str:
    """``2030-01-01 06:00:00Z (in 4h)`` from ISO text (``in 4h`` if compact); ``-`` if unset."""
    moment = _parse_time(value)
    if moment is None:
        return "-"
    delta = (moment - datetime.now(UTC)).total_seconds()
    relative = f"in {_span(delta)}" if delta >= 0 else f"{_span(delta)} ago"
    if compact:
        return relative
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z ({relative})"


def outcome_text(outcome: str | None) -> Text:
    if not outcome:
        return Text("-")
    return Text(outcome, style=OUTCOME_STYLES.get(outcome, ""))


def seconds_text(value: float | None) -> str:
    return "-" if value is None else _span(value)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))


# health ---------------------------------------------------------------------------------
@health_app.command("check")
def health_check(
    ctx: typer.Context,
    detailed: Annotated[
        bool, typer.Option("--detailed", help="also list instances and backend latency")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Scheduler status, active jobs and next runs; exits 1 when unhealthy."""
    report = api(ctx).request("GET", "/health/detailed")
    if as_json:
        print_json(report)
    else:
        _print_health(report, detailed=detailed)
    if report["status"] == "unhealthy":
        raise typer.Exit(EXIT_FAILED)


def _print_health(report: dict[str, Any], *, detailed: bool) -> None:
    status = report["status"]
    console.print(Text.assemble("Sundial: ", (status.upper(), STATUS_STYLES.get(status, ""))))
    backend = report["backend"]
    if backend["up"]:
        latency = f" ({backend['latency_ms']:.1f} ms)" if detailed and backend["latency_ms"] else ""
        console.print(f"Backend:   {backend['kind']} up{latency}", highlight=False)
    else:
        console.print(f"Backend:   {backend['kind']} [red]DOWN[/]: {backend['error']}")
    scheduler = report.get("scheduler")
    if scheduler is not None:
        _print_scheduler(scheduler, detailed=detailed)
    jobs = report.get("jobs")
    if jobs is not None:
        console.print(
            f"Jobs:      {jobs['scheduled']} active, {jobs['paused']} paused "
            f"({jobs['total']} total)",
            highlight=False,
        )
    for problem in report["problems"]:
        console.print(f"[yellow]problem:[/] {problem}", highlight=False)
    if report["next_runs"]:
        table = Table("Next run", "Job", "Trigger", title="Next executions", title_justify="left")
        for run in report["next_runs"]:
            table.add_row(when(run["next_run_time"]), run["job_id"], run["trigger_text"])
        console.print(table)


def _print_scheduler(scheduler: dict[str, Any], *, detailed: bool) -> None:
    age = scheduler["heartbeat_age_seconds"]
    if scheduler["leader_present"]:
        line = f"leader [bold]{scheduler['leader']}[/], {scheduler['live_instances']} live"
    elif scheduler["instances"]:
        line = "[red]no live leader[/]"
    else:
        line = "[red]no scheduler running (none registered)[/]"
    if age is not None:
        line += f", last heartbeat {_span(age)} ago"
    console.print(f"Scheduler: {line}", highlight=False)
    if detailed and scheduler["instances"]:
        table = Table("Instance", "Host", "PID", "Role", "Version", "Heartbeat", "Alive")
        for instance in scheduler["instances"]:
            table.add_row(
                instance["id"],
                instance["host"],
                str(instance["pid"]),
                instance["role"],
                instance["version"],
                f"{_span(instance['heartbeat_age_seconds'])} ago",
                Text("yes", "green") if instance["alive"] else Text("no", "red"),
            )
        console.print(table)


# jobs -----------------------------------------------------------------------------------
@jobs_app.command("list")
def jobs_list(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option(help="scheduled or paused")] = None,
    tag: Annotated[str | None, typer.Option(help="only jobs with this tag")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="at most this many jobs")] = None,
    as_json: JsonOption = False,
) -> None:
    """Jobs with their state, trigger, next run and last run."""
    params = {key: value for key, value in {"state": state, "tag": tag}.items() if value}
    jobs = list(api(ctx).pages("/api/v1/jobs", params, limit))
    if as_json:
        print_json(jobs)
        return
    table = Table("State", "Trigger", "Next run", "Last run", "Fails")
    table.columns.insert(0, Column("ID", no_wrap=True))
    for job in jobs:
        last = job.get("last_run") or {}
        last_run = (
            Text.assemble(outcome_text(last["outcome"]), " ", when(last["at"], compact=True))
            if last.get("outcome")
            else Text("-")
        )
        table.add_row(
            job["id"],
            Text(job["state"], "green" if job["state"] == "scheduled" else "yellow"),
            job["trigger_text"],
            when(job["next_run_time"], compact=True),
            last_run,
            str(last.get("consecutive_failures", 0)),
        )
    console.print(table)
    console.print(f"{len(jobs)} job(s)", highlight=False)


@jobs_app.command("show")
def jobs_show(ctx: typer.Context, job_id: str, as_json: JsonOption = False) -> None:
    """One job: trigger, options, next and last run, recent success rate and durations."""
    job = api(ctx).request("GET", f"/api/v1/jobs/{job_id}")
    if as_json:
        print_json(job)
        return
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    last = job.get("last_run") or {}
    recent = job["recent"]
    rate = recent["success_rate"]
    durations = recent["duration_seconds"] or {}
    rows: list[tuple[str, str | Text]] = [
        ("ID", job["id"]),
        ("Name", job["name"]),
        ("Function", job["func"]),
        ("State", job["state"]),
        ("Trigger", f"{job['trigger_text']}  {json.dumps(job['trigger'])}"),
        ("Next run", when(job["next_run_time"])),
        ("Last run", Text.assemble(outcome_text(last.get("outcome")), " ", when(last.get("at")))),
        ("Last success", when(last.get("last_success_at"))),
        ("Failures in a row", str(last.get("consecutive_failures", 0))),
        (
            "Recent runs",
            f"{recent['runs']} finished, success rate " + ("-" if rate is None else f"{rate:.0%}"),
        ),
        (
            "Durations",
            "-"
            if not durations
            else f"p50 {seconds_text(durations['p50'])}, p95 {seconds_text(durations['p95'])}, "
            f"max {seconds_text(durations['max'])}",
        ),
        ("Running now", str(len(job["running"]))),
        ("Critical", "yes" if job["critical"] else "no"),
        ("Tags", ", ".join(job["tags"]) or "-"),
        ("Kwargs", json.dumps(job["kwargs"]) if job["kwargs"] else "-"),
        ("Description", job["description"] or "-"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


def _submit(
    client: Api, method: str, path: str, what: str, wait: float, as_json: bool, body: Any = None
) -> None:
    answer = client.request(method, path, params={"wait": wait}, json=body)
    if as_json:
        print_json(answer)
    state = answer["state"]
    if state == "applied":
        if not as_json:
            note = f" ({answer['reason']})" if answer.get("reason") else ""
            console.print(f"{what}: [green]applied[/]{note}", highlight=False)
        return
    if state == "rejected":
        if not as_json:
            console.print(f"{what}: [red]rejected[/]: {answer['reason']}", highlight=False)
        raise typer.Exit(EXIT_FAILED)
    if not as_json:
        console.print(
            f"{what}: [yellow]still pending[/] after {wait:g}s (command {answer['command_id']}); "
            "is a scheduler leader running? Follow it at "
            f"{client.url}{answer['url']}",
            highlight=False,
        )
    raise typer.Exit(EXIT_PENDING)


#: changes that need nothing but the job's id: (command, HTTP method, path after the id, help)
JOB_CHANGES = (
    ("pause", "POST", "/pause", "Pause a job."),
    ("resume", "POST", "/resume", "Resume a paused job."),
    ("run", "POST", "/run", "Run a job once now; its regular schedule is unchanged."),
    ("remove", "DELETE", "", "Remove a job."),
)


def _add_job_change(name: str, method: str, suffix: str, help_text: str) -> None:
    """Register ``sundial jobs NAME ID``, which asks the API for that change to the job."""

    def change(
        ctx: typer.Context,
        job_id: str,
        wait: WaitOption = DEFAULT_WAIT_SECONDS,
        as_json: JsonOption = False,
    ) -> None:
        path = f"/api/v1/jobs/{job_id}{suffix}"
        _submit(api(ctx), method, path, f"{name} {job_id}", wait, as_json)

    jobs_app.command(name, help=help_text)(change)


for job_change in JOB_CHANGES:
    _add_job_change(*job_change)


@jobs_app.command("reschedule")
def jobs_reschedule(
    ctx: typer.Context,
    job_id: str,
    cron: Annotated[str | None, typer.Option(help="crontab text, e.g. '0 6 * * *'")] = None,
    every: Annotated[str | None, typer.Option(help="interval, e.g. 15m, 1h30m, 2d")] = None,
    at: Annotated[str | None, typer.Option(help="once, at an ISO 8601 time with offset")] = None,
    timezone: Annotated[str, typer.Option(help="IANA time zone of the trigger")] = "UTC",
    wait: WaitOption = DEFAULT_WAIT_SECONDS,
    as_json: JsonOption = False,
) -> None:
    """Give a job a new trigger: exactly one of --cron, --every, --at."""
    trigger = _trigger(cron=cron, every=every, at=at, timezone=timezone)
    _submit(
        api(ctx),
        "PATCH",
        f"/api/v1/jobs/{job_id}",
        f"reschedule {job_id}",
        wait,
        as_json,
        body={"trigger": trigger},
    )


def _trigger(*, cron: str | None, every: str | None, at: str | None, timezone: str) -> Any:
    given = [name for name, value in (("--cron", cron), ("--every", every), ("--at", at)) if value]
    if len(given) != 1:
        raise typer.BadParameter("give exactly one of --cron, --every, --at")
    if cron:
        return {"type": "cron", "expression": cron, "timezone": timezone}
    if every:
        try:
            seconds = parse_duration(every)
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint="--every") from None
        return {"type": "interval", "seconds": seconds, "timezone": timezone}
    return {"type": "date", "run_at": at, "timezone": timezone}


@app.command("preview")
def preview(
    ctx: typer.Context,
    cron: Annotated[str | None, typer.Option(help="crontab text, e.g. '30 2 * * sun'")] = None,
    every: Annotated[str | None, typer.Option(help="interval, e.g. 15m, 1h30m, 2d")] = None,
    at: Annotated[str | None, typer.Option(help="once, at an ISO 8601 time with offset")] = None,
    timezone: Annotated[str, typer.Option(help="IANA time zone of the trigger")] = "UTC",
    count: Annotated[int, typer.Option(min=1, max=50, help="fire times to list")] = 5,
    as_json: JsonOption = False,
) -> None:
    """Show a trigger in words and its next fire times, checked as saving it would be."""
    trigger = _trigger(cron=cron, every=every, at=at, timezone=timezone)
    answer = api(ctx).request(
        "POST", "/api/v1/triggers/preview", json={"trigger": trigger, "count": count}
    )
    if as_json:
        print_json(answer)
        return
    console.print(f"[bold]{answer['trigger_in_words']}[/]  {answer['trigger_text']}")
    zone = ZoneInfo(timezone)
    for fire in answer["next_fire_times"]:
        moment = datetime.fromisoformat(fire)
        console.print(
            f"  {moment.astimezone(zone):%a %Y-%m-%d %H:%M %Z}  ({when(fire)})", highlight=False
        )


# runs -----------------------------------------------------------------------------------
@runs_app.command("list")
def runs_list(
    ctx: typer.Context,
    job: Annotated[str | None, typer.Option("--job", help="only this job's runs")] = None,
    outcome: Annotated[
        str | None,
        typer.Option(help="success, failure, timeout, missed, skipped, interrupted, running"),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="runs scheduled at or after this ISO 8601 time")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many runs")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Runs, newest first."""
    params = {
        key: value
        for key, value in {"job_id": job, "outcome": outcome, "since": since}.items()
        if value
    }
    runs = list(api(ctx).pages("/api/v1/runs", params, limit))
    if as_json:
        print_json(runs)
        return
    table = Table("Scheduled", "Duration", "Outcome", "Try", "Error")
    table.columns[0:0] = [Column("Run", no_wrap=True), Column("Job", no_wrap=True)]
    for run in runs:
        error = ": ".join(part for part in (run["error_type"], run["error_message"]) if part)
        table.add_row(
            run["run_id"][:8],
            run["job_id"],
            when(run["scheduled_time"]),
            seconds_text(run["duration_seconds"]),
            outcome_text(run["outcome"]),
            str(run["attempt"]) + (" (manual)" if run["manual"] else ""),
            error.splitlines()[0] if error else "",
        )
    console.print(table)
    console.print(f"{len(runs)} run(s)", highlight=False)


# workers --------------------------------------------------------------------------------
@workers_app.command("list")
def workers_list(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Workers, live first: queues, heartbeat and what each is running."""
    answer = api(ctx).request("GET", "/api/v1/workers")
    if as_json:
        print_json(answer)
        return
    table = Table("Host", "PID", "Queues", "Heartbeat", "State", "Running")
    table.columns.insert(0, Column("Worker", no_wrap=True))
    for worker in answer["workers"]:
        running = ", ".join(f"{run['job_id']} ({run['run_id'][:8]})" for run in worker["running"])
        table.add_row(
            worker["id"],
            worker["host"],
            str(worker["pid"]),
            ", ".join(worker["queues"]),
            f"{_span(worker['heartbeat_age_seconds'])} ago",
            Text(worker["state"], "green" if worker["state"] == "alive" else "red"),
            running or "-",
        )
    console.print(table)
    console.print(f"{answer['live']} live of {len(answer['workers'])} worker(s)", highlight=False)
