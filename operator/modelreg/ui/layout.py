"""HTML building blocks of the UI: escaping, tables, definition lists, the page frame.

Called by `modelreg.ui.pages` and `modelreg.ui.server` (error pages). Pure: values in, HTML text
out. Every value is escaped unless it is `Safe` (HTML this module or `charts` already built), so
a model name, tag or condition message can never inject markup.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import quote

from modelreg.ui import assets

ABSENT = "—"


class Safe(str):
    """Text that is already HTML (built here from escaped parts): inserted as is."""

    __slots__ = ()

    def __add__(self, other: Safe) -> Safe:  # type: ignore[override]
        # Only HTML joins HTML: mypy refuses `Safe + str`, so text is never appended unescaped.
        return Safe(str.__add__(self, other))


def esc(value: object) -> Safe:
    """`value` as HTML: Safe passes through, None is the absent mark, the rest is escaped."""
    if isinstance(value, Safe):
        return value
    if value is None or value == "":
        return Safe(f'<span class="absent">{ABSENT}</span>')
    return Safe(html.escape(str(value), quote=True))


def join(parts: Iterable[object], sep: str = "") -> Safe:
    return Safe(sep.join(esc(p) for p in parts))


def attrs(values: Mapping[str, object | None]) -> Safe:
    """` name="value"` pairs; None drops the attribute, True writes it bare."""
    out = []
    for name, value in values.items():
        if value is None or value is False:
            continue
        if value is True:
            out.append(f" {name}")
        else:
            out.append(f' {name}="{html.escape(str(value), quote=True)}"')
    return Safe("".join(out))


def tag(name: str, content: object = "", **attributes: object | None) -> Safe:
    """`<name attrs>content</name>`; attribute names use `_` for `-` (`data_live`), `cls`
    for `class`."""
    named = {("class" if k == "cls" else k.replace("_", "-")): v for k, v in attributes.items()}
    body = esc(content) if content != "" else ""
    return Safe(f"<{name}{attrs(named)}>{body}</{name}>")


def link(href: str, text: object, **attributes: object | None) -> Safe:
    return tag("a", text, href=href, **attributes)


def path(*segments: str | int) -> str:
    """A URL path from segments, each percent-encoded."""
    return "/" + "/".join(quote(str(s), safe="") for s in segments)


class Cell:
    """A table cell with attributes (a live key, a state class, a header cell)."""

    def __init__(
        self, content: object, *, header: bool = False, **attributes: object | None
    ) -> None:
        self.content = content
        self.header = header
        self.attributes = attributes

    def html(self) -> Safe:
        if self.header:
            return tag("th", self.content, scope="row", **self.attributes)
        return tag("td", self.content, **self.attributes)


def table(
    caption: str,
    headers: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    empty: str = "Nothing to show.",
    cls: str = "",
    caption_hidden: bool = False,
) -> Safe:
    """A data table: a caption, column headers with scope, the first cell of each row a row
    header. Cells are values or `Cell`s."""
    body = []
    for row in rows:
        cells = []
        for i, c in enumerate(row):
            cell = c if isinstance(c, Cell) else Cell(c, header=i == 0)
            cells.append(cell.html())
        body.append(f"<tr>{''.join(cells)}</tr>")
    if not body:
        return tag("p", empty, cls="empty")
    head = "".join(tag("th", h, scope="col") for h in headers)
    cap = tag("caption", caption, cls="visually-hidden" if caption_hidden else None)
    return Safe(
        f'<div class="table-wrap"><table{attrs({"class": cls or None})}>{cap}'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def dl(pairs: Iterable[tuple[str, object]], cls: str = "facts") -> Safe:
    """A definition list of (term, value) pairs."""
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in pairs)
    return Safe(f'<dl class="{cls}">{items}</dl>')


def section(title: str, content: object, *, ident: str, level: int = 2) -> Safe:
    heading = tag(f"h{level}", title, id=f"{ident}-title")
    return Safe(f'<section aria-labelledby="{ident}-title">{heading}{esc(content)}</section>')


def badge(text: object, state: str) -> Safe:
    """A state word with its colour class (the word itself carries the meaning, not the colour)."""
    return tag("span", text, cls=f"badge state-{state}")


def page(
    title: str,
    body: object,
    *,
    crumbs: Sequence[tuple[str, str]] = (),
    namespace: str = "",
    identity: str = "",
    live_url: str | None = None,
) -> Safe:
    """The whole document: lang, title, skip link, header with breadcrumbs, main, footer."""
    trail = "".join(f"<li>{link(href, text)}</li>" for href, text in crumbs)
    trail += f'<li aria-current="page">{esc(title)}</li>'
    who = f" as {esc(identity)}" if identity else ""
    where = f"namespace {tag('strong', namespace)}{who}" if namespace else ""
    main_attrs = attrs({"id": "main", "tabindex": "-1", "data-live-url": live_url})
    script = f'<script src="{assets.url("live.js")}" defer></script>' if live_url else ""
    return Safe(
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · modelreg</title>"
        f'<link rel="stylesheet" href="{assets.url("ui.css")}">'
        '<link rel="icon" href="data:,">'
        f"{script}</head><body>"
        '<a class="skip-link" href="#main">Skip to main content</a>'
        '<header class="top"><p class="brand"><a href="/">modelreg</a></p>'
        f'<p class="context">{where}</p>'
        f'<nav aria-label="Breadcrumb"><ol class="crumbs">{trail}</ol></nav></header>'
        f"<main{main_attrs}><h1>{esc(title)}</h1>{esc(body)}</main>"
        '<footer><p>Read-only view. <span id="live-status" role="status" aria-live="polite">'
        "</span></p></footer>"
        "</body></html>\n"
    )
