"""The stylesheet's colour pairs meet WCAG AA: a contrast ratio of at least 4.5:1 for text."""

from __future__ import annotations

import re

import pytest

from modelreg.ui.assets import STATIC

CSS = (STATIC / "ui.css").read_text()
VARS = dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-fA-F]{6})", CSS))
# (text, background) pairs the pages actually use
PAIRS = [
    ("fg", "bg"),
    ("fg", "panel"),
    ("muted", "bg"),
    ("muted", "panel"),
    ("link", "bg"),
    ("link", "panel"),
    ("ok-fg", "ok-bg"),
    ("busy-fg", "busy-bg"),
    ("bad-fg", "bad-bg"),
    ("muted-fg", "muted-bg"),
    ("muted", "ok-bg"),  # a delta inside the best cell
    ("fg", "busy-bg"),  # a differing param
    ("ok-fg", "bg"),
]


def luminance(hex_colour: str) -> float:
    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.mark.parametrize(("fg", "bg"), PAIRS)
def test_text_contrast_is_at_least_4_5(fg: str, bg: str) -> None:
    assert contrast(VARS[fg], VARS[bg]) >= 4.5, (fg, bg, round(contrast(VARS[fg], VARS[bg]), 2))


def test_the_button_text_and_the_focus_ring() -> None:
    assert contrast("#ffffff", VARS["link"]) >= 4.5
    assert contrast(VARS["focus"], VARS["bg"]) >= 3.0  # non-text contrast (WCAG 1.4.11)
    assert ":focus-visible" in CSS
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
