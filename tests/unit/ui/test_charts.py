"""Inline SVG charts: points, gaps, the best one marked, gate lines, escaping, nothing for nothing."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from modelreg.ui import charts
from modelreg.ui.charts import Point

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # noqa: S314 - our own output


def test_a_line_has_one_dot_per_value_and_marks_the_best() -> None:
    svg = charts.line_chart("auc", [Point("v1", 0.8), Point("v2", 0.9, True), Point("v3", 0.85)])
    root = parse(svg)
    assert root.get("role") == "img"
    assert "lowest 0.8 (v1), highest 0.9 (v2)" in (root.get("aria-label") or "")
    dots = root.findall(f"{SVG}circle")
    assert len(dots) == 3
    assert [d.get("class") for d in dots] == ["dot", "dot best", "dot"]
    ys = [float(d.get("cy") or 0) for d in dots]
    assert ys[1] < ys[2] < ys[0]  # higher values are drawn higher up


def test_a_missing_value_breaks_the_line_and_gates_are_drawn() -> None:
    pts = [Point("v1", 1), Point("v2", 2), Point("v3", None), Point("v4", 3), Point("v5", 4)]
    root = parse(charts.line_chart("x", pts, bounds=[2.5]))
    assert len(root.findall(f"{SVG}polyline")) == 2
    assert len(root.findall(f"{SVG}circle")) == 4
    gates = [e for e in root.findall(f"{SVG}line") if e.get("class") == "gate"]
    assert len(gates) == 1


def test_bars_start_at_zero_for_positive_values() -> None:
    root = parse(charts.bar_chart("latency", [Point("v1", 40), Point("v2", 20, True)]))
    bars = root.findall(f"{SVG}rect")
    assert [b.get("class") for b in bars] == ["bar", "bar best"]
    h1, h2 = (float(b.get("height") or 0) for b in bars)
    assert abs(h1 / h2 - 2) < 0.01  # proportional: no truncated axis
    assert any(t.text == "0" for t in root.findall(f"{SVG}text"))


def test_labels_are_escaped_and_empty_charts_are_nothing() -> None:
    svg = charts.line_chart("<b>", [Point("<v1>", 1.0), Point("v2", 2.0)])
    parse(svg)
    assert "<b>" not in svg
    assert "<v1>" not in svg
    assert charts.line_chart("m", [Point("v1", None)]) == ""
    assert charts.bar_chart("m", []) == ""


def test_many_versions_thin_the_axis_labels_and_equal_values_still_draw() -> None:
    pts = [Point(f"v{i}", float(i)) for i in range(1, 201)]
    labels = re.findall(r">v\d+</text>", charts.line_chart("m", pts))
    assert 10 <= len(labels) <= 14
    assert ">v200</text>" in labels[-1]
    parse(charts.line_chart("flat", [Point("v1", 5), Point("v2", 5)]))
