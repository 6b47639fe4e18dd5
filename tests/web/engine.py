"""Driving the browser engine from tests: import disco.js in a page, hand it files."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from playwright.sync_api import Page

T = TypeVar("T")

IMPORT_ENGINE = """async (server) => {
    window.disco = await import(server + "/app/disco.js");
    window.server = server;
    await window.disco.initBackend();
    return window.disco.currentBackend();
}"""

FILE_HELPERS = """() => {
    window.fileFrom = (name, base64, type) => {
        const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
        return new File([bytes], name, { type });
    };
    window.dataErrorOf = async (promise) => {
        try { await promise; return null; }
        catch (error) {
            return { name: error.name, message: error.message, issues: error.issues ?? [] };
        }
    };
}"""


def open_engine(page: Page, server: str) -> str:
    """Load the app page (same origin as the server), import the engine; the backend in use."""
    page.goto(server + "/app/")
    page.evaluate(FILE_HELPERS)
    backend: str = page.evaluate(IMPORT_ENGINE, server)
    return backend


def file_arg(path: Path, name: str | None = None, kind: str = "") -> dict[str, str]:
    """A file's name, content (base64) and type, for `fileFrom` in the page."""
    return {
        "name": name or path.name,
        "data": base64.b64encode(path.read_bytes()).decode("ascii"),
        "type": kind,
    }


def text_file_arg(name: str, text: str) -> dict[str, str]:
    data = base64.b64encode(text.encode()).decode("ascii")
    return {"name": name, "data": data, "type": "text/csv"}


def evaluate(page: Page, script: str, arg: Any = None) -> Any:
    """page.evaluate with the engine in `window.disco` (a thin alias, for readable tests)."""
    return page.evaluate(script, arg)


def run_async(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine from a test: Playwright's sync API keeps an event loop on this thread,
    so the coroutine runs on its own loop in a worker thread."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, factory()).result()  # type: ignore[arg-type]
