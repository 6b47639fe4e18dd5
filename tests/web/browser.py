"""Headless Chromium for the browser tests: Debian's `chromium` driven by Playwright.

Playwright's own browser download does not work here, so `executable_path` points at the
Debian binary (installed by scripts/bootstrap.sh). Every browser gets a new empty profile
(Playwright's temporary user-data-dir) and the flags below; closing it ends its processes.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, sync_playwright

CHROMIUM = Path("/usr/lib/chromium/chromium")

CHROMIUM_FLAGS: tuple[str, ...] = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
"""Flags of every test browser: no network but the test server's (loopback)."""

WEBRTC_FLAGS: tuple[str, ...] = (
    "--allow-loopback-in-peer-connection",  # else 127.0.0.1 is never a host candidate
    "--use-fake-ui-for-media-stream",  # media permission: Chromium then gathers host candidates
    "--use-fake-device-for-media-stream",
)
"""Extra flags of browsers that make WebRTC connections to peers on this machine."""

ACTION_TIMEOUT_MS = 30_000


def chromium_path() -> str:
    """The Debian chromium binary, or a clear failure (the test set-up installs it)."""
    if CHROMIUM.is_file():
        return str(CHROMIUM)
    found = shutil.which("chromium")
    if found is None:
        raise RuntimeError("Debian's chromium is not installed: run scripts/bootstrap.sh test")
    return found


@contextmanager
def launch_chromium(extra_flags: Sequence[str] = ()) -> Iterator[Browser]:
    """A headless Chromium (closed, with all its processes, on exit)."""
    with sync_playwright() as playwright:
        browser = _launch(playwright, extra_flags)
        try:
            yield browser
        finally:
            browser.close()


def _launch(playwright: Playwright, extra_flags: Sequence[str]) -> Browser:
    return playwright.chromium.launch(
        executable_path=chromium_path(),
        headless=True,
        chromium_sandbox=False,
        args=[*CHROMIUM_FLAGS, *extra_flags],
        timeout=60_000,
    )


@dataclass
class ConsoleLog:
    """Console messages and page errors of one page, to assert that none is an error."""

    errors: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))

    def _on_console(self, message: ConsoleMessage) -> None:
        text = f"{message.type}: {message.text}"
        self.messages.append(text)
        if message.type == "error":
            self.errors.append(text)


def new_page(
    browser: Browser, log: ConsoleLog | None = None, **context_options: Any
) -> tuple[Page, ConsoleLog]:
    """A page in a fresh context (own storage), with its console recorded in `log`."""
    context = browser.new_context(**context_options)
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    page = context.new_page()
    log = log if log is not None else ConsoleLog()
    log.attach(page)
    return page, log
