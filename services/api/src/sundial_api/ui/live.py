"""The UI's live feed: each open page's own fragments, re-rendered and sent when changed.

The API's ``/api/v1/events`` feed compares the whole catalog on every tick, which costs
seconds per tick at 100,000 jobs, for every open page. A page shows at most one page of
jobs, so its feed re-reads only what it shows (through the same functions that rendered
it), renders the same partial templates, and sends the fragments whose HTML differs from
what it sent last. The first tick sends them all, which also covers whatever changed
between rendering the page and connecting. htmx's SSE extension swaps each fragment in
by its element id (``hx-swap-oob``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sundial.backends import BackendError
from sundial_api.events import Event
from sundial_api.ui.pages import Banner, outage
from sundial_api.ui.rendering import render

EVENT_NAME = "update"
#: how often a page's feed re-reads what it shows
POLL_SECONDS = 1.0


@dataclass(frozen=True)
class Fragment:
    """An element that is always on the page, replaced whole (its HTML has hx-swap-oob)."""

    element_id: str
    html: str


@dataclass(frozen=True)
class Rows:
    """A table body, newest row first, that gains rows at the top while the page is open.

    Sent whole the first time (with hx-swap-oob); after that a changed row is replaced and
    new rows are inserted at the top, so that a row someone is reading (a traceback they
    opened) stays as it is until it changes itself.
    """

    body_id: str
    whole: str
    #: (element id, HTML to insert, HTML that replaces the row) for each row
    rows: list[tuple[str, str, str]]


def banner_fragment(banner: Banner) -> Fragment:
    return Fragment("banner", render("partials/banner.html", banner=banner, oob=True))


class PageFeed:
    """A :class:`~sundial_api.events.Feed` of one page's changed fragments."""

    def __init__(self, read: Callable[[], list[Fragment | Rows]]) -> None:
        self._read = read
        self._sent: dict[str, str] = {}
        #: per table body: the rows sent, by element id
        self._rows: dict[str, dict[str, str]] = {}

    def tick(self) -> list[Event]:
        try:
            parts = self._read()
        except BackendError as error:
            # the rest of the page keeps what it last showed; the banner says why
            parts = [banner_fragment(outage(error))]
        pieces = [
            piece
            for part in parts
            for piece in (self._fragment(part) if isinstance(part, Fragment) else self._body(part))
        ]
        # Each piece in a <template> of its own: HTML parses a table row only where a
        # table part may stand, so rows beside a <div> would be dropped; htmx swaps the
        # pieces out of the templates.
        html = "".join(f"<template>{piece}</template>" for piece in pieces)
        return [Event(EVENT_NAME, html)] if html else []

    def _fragment(self, fragment: Fragment) -> list[str]:
        if self._sent.get(fragment.element_id) == fragment.html:
            return []
        self._sent[fragment.element_id] = fragment.html
        return [fragment.html]

    def _body(self, rows: Rows) -> list[str]:
        sent = self._rows.get(rows.body_id)
        current = {element_id: insert for element_id, insert, _ in rows.rows}
        if not sent:
            # the first time, and while the body showed no rows (but a "none yet" line)
            if sent is not None and not current:
                return []
            self._rows[rows.body_id] = current
            return [rows.whole]
        pieces = [
            replace
            for element_id, insert, replace in rows.rows
            if element_id in sent and sent[element_id] != insert
        ]
        new = "".join(insert for element_id, insert, _ in rows.rows if element_id not in sent)
        if new:
            pieces.append(f'<tbody hx-swap-oob="afterbegin:#{rows.body_id}">{new}</tbody>')
        sent.update(current)
        return pieces
