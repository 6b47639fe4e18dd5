"""Driving the browser engine from tests: import disco.js in a page, hand it files."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from playwright.sync_api import Page

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
