"""The web app under `/app/`: the engine `disco.js`, the pages and their assets.

Cache policy: files under `assets/` carry a content hash in their name and never change, so they
are `immutable` for a year; everything else (`disco.js`, the pages, `build.json`) is `no-cache`
with an ETag, so a new build is picked up at the next load. A `.gz` twin made at build time is
sent to clients that accept gzip. A path without a file extension that matches no file gets
`index.html`, so pages may use client-side routes (`/app/tasks/titanic`).

`GET /` redirects a browser (an Accept header that names text/html) to `/app/`; every other
client, DISCO's among them, keeps getting the identification text (see `routes.identify`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from disco.server.http.errors import error_response
from disco.web import INDEX, static_dir

router = APIRouter(include_in_schema=False)

APP_PREFIX: Final = "/app/"
IMMUTABLE: Final = "public, max-age=31536000, immutable"
REVALIDATE: Final = "no-cache"
HASHED_DIR: Final = "assets"
MEDIA_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".wasm": "application/wasm",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".csv": "text/csv; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}
NOT_BUILT: Final = (
    "the web app is not built on this server: run scripts/serve.sh (or `node web/build.mjs` "
    "after `npm install` in web/)"
)


def wants_html(accept: str | None) -> bool:
    """True when the Accept header names text/html with a non-zero quality (a browser)."""
    for media_range in (accept or "").split(","):
        kind, *params = (part.strip() for part in media_range.split(";"))
        if kind.lower() != "text/html":
            continue
        quality = next((p[2:] for p in params if p.lower().startswith("q=")), "1")
        try:
            return float(quality) > 0
        except ValueError:
            return True
    return False


def browser_redirect(request: Request) -> Response | None:
    """`/` for a browser: a redirect to the web app, when it is built; else None."""
    if static_dir() is None or not wants_html(request.headers.get("accept")):
        return None
    return RedirectResponse(APP_PREFIX, status_code=307, headers={"Vary": "Accept"})


@dataclass(frozen=True)
class _Loaded:
    """A file's bytes and their ETag, valid while the file keeps its size and mtime."""

    key: tuple[int, int]
    body: bytes
    etag: str


_cache: dict[Path, _Loaded] = {}


def _load(path: Path) -> _Loaded:
    """The file's bytes from the cache; the build replaces files, so (mtime, size) tells."""
    stat = path.stat()
    key = (stat.st_mtime_ns, stat.st_size)
    loaded = _cache.get(path)
    if loaded is None or loaded.key != key:
        body = path.read_bytes()
        loaded = _Loaded(key, body, f'"{hashlib.sha256(body).hexdigest()[:20]}"')
        _cache[path] = loaded
    return loaded


def _resolve(root: Path, relative: str) -> Path | None:
    """The file `relative` names under `root`, index.html for page routes, else None."""
    parts = PurePosixPath(relative).parts
    if any(part in ("..", ".") or part.startswith(".") or "\\" in part for part in parts):
        return None
    if not parts:
        return root / INDEX
    target = root.joinpath(*parts)
    if target.is_file():
        return target
    if "." not in parts[-1]:  # a client-side route such as /app/tasks/titanic
        return root / INDEX
    return None


@router.api_route("/app", methods=["GET", "HEAD"])
async def app_root() -> Response:
    """`/app` -> `/app/`, so relative links of the pages resolve."""
    return RedirectResponse(APP_PREFIX, status_code=308)


@router.api_route("/app/{path:path}", methods=["GET", "HEAD"])
async def app_file(request: Request, path: str) -> Response:
    """One file of the web app, with its cache headers (see the module docstring)."""
    root = static_dir()
    if root is None:
        return error_response(404, NOT_BUILT)
    target = _resolve(root, path)
    if target is None:
        return error_response(404, f"no such file in the web app: {path}")
    hashed = target.parent.name == HASHED_DIR and target.parent.parent == root
    headers = {
        "Cache-Control": IMMUTABLE if hashed else REVALIDATE,
        "Vary": "Accept-Encoding",
        "X-Content-Type-Options": "nosniff",
    }
    media_type = MEDIA_TYPES.get(target.suffix, "application/octet-stream")
    zipped = target.with_name(target.name + ".gz")
    if "gzip" in request.headers.get("accept-encoding", "") and zipped.is_file():
        loaded = _load(zipped)
        headers["Content-Encoding"] = "gzip"
    else:
        loaded = _load(target)
    headers["ETag"] = loaded.etag
    if request.headers.get("if-none-match") == loaded.etag:
        return Response(status_code=304, headers=headers)
    body = b"" if request.method == "HEAD" else loaded.body
    response = Response(body, media_type=media_type, headers=headers)
    if request.method == "HEAD":
        response.headers["Content-Length"] = str(len(loaded.body))
    return response
