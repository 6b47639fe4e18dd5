"""The browser app's built assets: the engine `disco.js`, the pages and TF.js' wasm binaries.

`web/` (TypeScript sources, npm dependencies) is built by `web/build.mjs` into `static/` here,
which the package ships (package-data) and `disco.server.http.webapp` serves under `/app/`.
The build is not committed; `scripts/bootstrap.sh` runs it when it is missing or stale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

STATIC_DIR: Final = Path(__file__).with_name("static")
"""Where `web/build.mjs` writes the assets."""

INDEX: Final = "index.html"


def static_dir() -> Path | None:
    """The built assets' folder, or None when the web app was not built (a headless server)."""
    return STATIC_DIR if (STATIC_DIR / INDEX).is_file() else None
