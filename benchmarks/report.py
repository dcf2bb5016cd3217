"""The table ``make bench`` prints and the JSON document ``--json`` writes."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from rich.console import Console
from rich.table import Table


@dataclass(frozen=True)
class Row:
    """One measurement, both sides, in one unit (``s`` values print as ms)."""

    backend: str
    metric: str
    unit: str
    sundial: float | None
    plain: float | None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.sundial is None or self.plain is None or self.plain == 0:
            return None
        return self.sundial / self.plain

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ratio": None if self.ratio is None else round(self.ratio, 4)}


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "s":
        ms = value * 1000
        return f"{ms:,.1f} ms" if ms < 10 else f"{ms:,.0f} ms"
    if unit == "KiB":
        return f"{value:,.1f} KiB"
    if unit == "%":
        return f"{value:.1f} %"
    if unit == "MiB":
        return f"{value:,.0f} MiB"
    return f"{value:,.0f} {unit}"


def _ratio(ratio: float | None) -> str:
    if ratio is None:
        return "—"
    return f"{ratio:.3f}x" if ratio < 0.1 else f"{ratio:.2f}x"


def render(rows: list[Row], *, title: str, console: Console) -> None:
    table = Table(title=title, title_justify="left")
    table.add_column("backend")
    table.add_column("measurement")
    table.add_column("Sundial", justify="right")
    table.add_column("plain APScheduler", justify="right")
    table.add_column("Sundial ÷ plain", justify="right")
    table.add_column("note")
    previous = None
    for row in rows:
        if previous is not None and row.backend != previous:
            table.add_section()
        previous = row.backend
        table.add_row(
            row.backend,
            row.metric,
            _value(row.sundial, row.unit),
            _value(row.plain, row.unit),
            _ratio(row.ratio),
            row.note,
        )
    console.print(table)
