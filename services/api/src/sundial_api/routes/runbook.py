"""``GET /runbook``: the alert runbook as a web page, one anchor per alert.

Every alert's ``runbook_url`` is ``<base>#<alertname in lower case>``; in the compose
stack the base is this route, so the link in an alert mail opens the alert's section.
The page is ``deploy/prometheus/RUNBOOK.md`` (``RUNBOOK.md`` in this package is a link to
it, so the wheel carries the same file), rendered once per process.
"""

from __future__ import annotations

import html
import itertools
import re
from functools import cache
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from markdown_it import MarkdownIt

router = APIRouter(tags=["runbook"])

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 52rem; margin: 2rem auto;
       padding: 0 1rem; color: #1f2328; }}
code {{ background: #f3f4f6; padding: 0 .25em; border-radius: 4px; }}
pre {{ background: #f3f4f6; padding: .75rem; overflow-x: auto; }}
h2 {{ border-bottom: 1px solid #d0d7de; padding-top: 1rem; }}
:target {{ background: #fff8c5; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #d0d7de; padding: .25rem .5rem; }}
</style>
</head>
<body>
{body}
</body>
</html>
"""


def anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def render(markdown: str) -> str:
    """``markdown`` as a page whose headings carry their anchors as ids."""
    parser = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = parser.parse(markdown)
    title = "Runbook"
    for opening, inline in itertools.pairwise(tokens):
        if opening.type == "heading_open":
            opening.attrSet("id", anchor(inline.content))
            if opening.tag == "h1":
                title = inline.content
    body = parser.renderer.render(tokens, parser.options, {})
    return PAGE.format(title=html.escape(title), body=body)


@cache
def page() -> str:
    return render(files("sundial_api").joinpath("RUNBOOK.md").read_text(encoding="utf-8"))


@router.get("/runbook", response_class=HTMLResponse, summary="What to do about each alert")
async def runbook() -> HTMLResponse:
    return HTMLResponse(page())
