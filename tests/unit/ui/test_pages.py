"""The pages as HTML: everything escaped, accessible structure, the live keys in place."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from modelreg.ui import error_pages, pages, parts, version_page
from modelreg.ui.layout import Safe, esc, table
from modelreg.ui.rbac import parse_forbidden
from tests.unit.ui.fixtures import MODEL, NOW, forbidden_message, registry_client

FRAME = parts.Frame("risk", "alice", NOW)
EVIL = '<script>alert("x")</script>'


class Doc(HTMLParser):
    """Tags with their attributes, and the ids labels point at, to check the structure."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag]


def all_pages() -> dict[str, str]:
    client, _kube = registry_client()
    m, versions = client.get_model(MODEL), client.list(MODEL)
    v5 = client.get(MODEL, 5)
    return {
        "models": pages.models_page(client.list_models(), client.list(), FRAME, q="x"),
        "model": pages.model_page(m, versions, FRAME),
        "version": version_page.version_page(m, v5, client.list_events(f"{MODEL}-v5"), FRAME),
        "compare": pages.compare_page(m, versions[3:], FRAME),
        "forbidden": error_pages.forbidden_page("m", None, FRAME),
        "not found": error_pages.not_found_page("no such model", FRAME),
    }


def test_every_page_is_accessible_markup() -> None:
    for name, html in all_pages().items():
        doc = Doc(html)
        assert doc.all("html") == [{"lang": "en"}], name
        assert re.search(r"<title>[^<]+ · modelreg</title>", html), name
        skip = doc.all("a")[0]
        assert skip == {"class": "skip-link", "href": "#main"}, name
        assert doc.all("main")[0]["id"] == "main"
        assert len(doc.all("h1")) == 1, name
        labelled = {a["for"] for a in doc.all("label") if a.get("for")}
        for field in doc.all("input") + doc.all("select"):
            inside_label = field.get("type") == "checkbox"  # wrapped in its <label>
            assert inside_label or field.get("id") in labelled, (name, field)
        for th in doc.all("th"):
            assert th.get("scope") in ("col", "row"), (name, th)
        assert len(doc.all("caption")) == len(doc.all("table")), name
        assert "onclick" not in html
        assert "<div onclick" not in html


def test_values_from_the_cluster_are_escaped() -> None:
    client, kube = registry_client()
    body = kube.objects[("models", "risk", MODEL)]
    body["spec"]["tags"] = {"x": EVIL}
    body["spec"]["description"] = EVIL
    body["status"]["endpoint"] = EVIL
    mv = kube.objects[("modelversions", "risk", f"{MODEL}-v5")]
    mv["status"]["conditions"][0]["message"] = EVIL
    mv["spec"]["params"] = {EVIL: EVIL}
    m, versions = client.get_model(MODEL), client.list(MODEL)
    html = (
        pages.models_page([m], versions, FRAME, q=EVIL)
        + pages.model_page(m, versions, FRAME)
        + version_page.version_page(m, client.get(MODEL, 5), [], FRAME)
        + pages.compare_page(m, versions[4:], FRAME)
        + error_pages.forbidden_page(EVIL, None, FRAME)
    )
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html


def test_the_search_box_keeps_the_query() -> None:
    client, _ = registry_client()
    html = pages.models_page(client.list_models(), client.list(), FRAME, q='a"b')
    assert 'value="a&quot;b"' in html
    assert "No models match." in html


def test_compare_marks_the_best_and_the_deltas() -> None:
    client, _ = registry_client()
    m, versions = client.get_model(MODEL), client.list(MODEL)
    html = pages.compare_page(m, [versions[3], versions[5]], FRAME)  # v4, v6
    cells = re.findall(r'<td class="num best">(.*?)</td>', html)
    assert len(cells) == 3  # v6 wins auc, latency (lower) and f1
    assert any("0.93" in c and "+0.05 (+5.7%)" in c for c in cells)
    assert any("24" in c and "-11 (-31.4%)" in c for c in cells)
    assert "(lower is better)" in html
    assert '<td class="differs">0.1</td>' in html  # the learning_rate param differs


def test_live_cells_carry_their_keys() -> None:
    html = all_pages()["model"]
    assert f'data-live="{MODEL}/v6/phase"' in html
    assert f'data-live="{MODEL}/replicas"' in html
    assert f'data-live-url="/api/live/models/{MODEL}"' in html
    assert re.search(r'<script src="/static/live.js\?v=[0-9a-f]{12}" defer></script>', html)


def test_the_forbidden_page_names_the_permission() -> None:
    msg = forbidden_message("alice", "list", "modelversions", "modelreg.dev", "team-a")
    html = error_pages.forbidden_page(msg, parse_forbidden(msg), FRAME)
    assert "You (alice) may not list modelversions.modelreg.dev in namespace team-a." in html
    assert "Ask for a Role granting: list on modelversions.modelreg.dev" in html


def test_layout_helpers() -> None:
    assert esc(None) == esc("") == Safe('<span class="absent">—</span>')
    assert esc(Safe("<b>")) == "<b>"
    assert table("c", ["a"], []) == '<p class="empty">Nothing to show.</p>'
