"""The screenshots in docs/images/ are current: each page, re-rendered from the fixture data in
real Chromium, must match its committed PNG within a small tolerance (font anti-aliasing may move
a few pixels; a changed page does not pass). Regenerate them with `make screenshots`."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

from tests.unit.ui import shots
from tests.unit.ui.browser import NoBrowser

# Mean absolute difference per channel (0-255) and share of pixels off by more than 48 levels.
MAX_MEAN_DIFF = 1.0
MAX_CHANGED_SHARE = 0.002


def difference(a: Path, b: Path) -> tuple[float, float, str]:
    """(mean abs difference, share of changed pixels, what differs in words)."""
    with Image.open(a) as x, Image.open(b) as y:
        if x.size != y.size:
            return 255.0, 1.0, f"size {y.size} instead of {x.size}"
        diff = ImageChops.difference(x.convert("RGB"), y.convert("RGB"))
        mean = sum(ImageStat.Stat(diff).mean) / 3
        changed = sum(diff.convert("L").histogram()[49:]) / (x.width * x.height)
        return mean, changed, f"mean difference {mean:.2f}, {changed:.3%} of pixels changed"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("screenshots")
    try:
        shots.capture(out)
    except NoBrowser as e:
        pytest.skip(str(e))  # only where chromium cannot be installed (not root); CI is root
    return out


@pytest.mark.parametrize("name", list(shots.PAGES))
def test_the_committed_screenshot_is_current(rendered: Path, name: str) -> None:
    committed = shots.IMAGES / f"{name}.png"
    assert committed.exists(), f"{committed} is missing: run `make screenshots` and commit it"
    mean, changed, what = difference(committed, rendered / f"{name}.png")
    stale = f"docs/images/{name}.png is out of date ({what}): run `make screenshots` and commit it"
    assert mean <= MAX_MEAN_DIFF, stale
    assert changed <= MAX_CHANGED_SHARE, stale


def test_the_comparison_sees_a_change(tmp_path: Path) -> None:
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.new("RGB", (100, 100), "white").save(a)
    img = Image.new("RGB", (100, 100), "white")
    img.paste((0, 0, 0), (0, 0, 10, 10))  # 1% of the pixels
    img.save(b)
    mean, changed, _ = difference(a, b)
    assert changed == pytest.approx(0.01)
    assert mean > MAX_MEAN_DIFF or changed > MAX_CHANGED_SHARE
    assert difference(a, a)[:2] == (0.0, 0.0)
