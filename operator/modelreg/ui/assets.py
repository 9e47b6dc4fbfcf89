"""The UI's static assets (static/ui.css, static/live.js) and their cache-busting URLs.

Called by `modelreg.ui.layout` (the links in every page) and `modelreg.ui.server` (serving them).
Each URL carries a hash of the file's bytes, so the browser may cache it for good (`immutable`)
and a new version of the package is fetched anew: no revalidation round trip on each page.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

STATIC = Path(__file__).parent / "static"
CACHE_FOREVER = "public, max-age=31536000, immutable"


@functools.cache
def url(name: str) -> str:
    digest = hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:12]
    return f"/static/{name}?v={digest}"
