"""`make screenshots`: each UI page rendered from the fixed fixture data, captured in Chromium.

    python -m tests.unit.ui.shots [OUT_DIR]      # default docs/images/

The real UI server (`modelreg.ui.server.make_app`) serves tests/unit/ui/fixtures' registry through
the real SDK Client, with "now" fixed, at a 1280x800 viewport in Debian's headless Chromium.
test_screenshots.py captures the same pages and compares them with the committed PNGs.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from modelreg.ui.server import make_app
from tests.unit.ui.browser import VIEWPORT, browser, serving
from tests.unit.ui.fixtures import MODEL, NOW, registry_client

REPO = Path(__file__).resolve().parents[3]
IMAGES = REPO / "docs" / "images"
# name -> (path, whether the identity is refused modelversions)
PAGES = {
    "ui-models": ("/", False),
    "ui-model": (f"/models/{MODEL}", False),
    "ui-version": (f"/models/{MODEL}/versions/5", False),
    "ui-compare": (f"/models/{MODEL}/compare?v=4&v=5&v=6", False),
    "ui-forbidden": (f"/models/{MODEL}", True),
}
IDENTITY = "alice"


@contextmanager
def fixture_servers() -> Iterator[dict[bool, str]]:
    """Two UI servers over the fixture registry: as alice, and as an alice who may not list
    ModelVersions (the 403 page)."""
    with ExitStack() as stack:
        urls = {}
        for refused in (False, True):
            client, kube = registry_client()
            if refused:
                kube.refuse["modelversions"] = IDENTITY
            app = make_app(client, identity=IDENTITY, clock=lambda: NOW)
            urls[refused] = stack.enter_context(serving(app))
        yield urls


def capture(out: Path) -> list[Path]:
    """Write one PNG per page into `out`; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with fixture_servers() as urls, browser() as b:
        context = b.new_context(viewport=VIEWPORT, device_scale_factor=1, reduced_motion="reduce")
        page = context.new_page()
        for name, (path, refused) in PAGES.items():
            page.goto(urls[refused] + path, wait_until="load")
            # The live script's status line says when it last refreshed: not part of the picture.
            page.evaluate(
                "() => { const s = document.getElementById('live-status'); if (s) s.remove(); }"
            )
            dest = out / f"{name}.png"
            page.screenshot(path=str(dest), full_page=True, animations="disabled", caret="hide")
            written.append(dest)
        context.close()
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else IMAGES
    for path in capture(out):
        print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
