"""Fixtures of the browser tests: one server and one headless Chromium per test module.

- `web_server`: disco-server (default tasks) on a free loopback port, in a thread, for the
  module; its base URL.
- `browser`: a headless Chromium (see `web.browser`) for the module.
- `page`: a fresh browser context and page for one test; `page_console` its console log, and
  the test fails if the page logged an error.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from disco.server.runner import serve_in_thread
from disco.server.settings import Settings
from disco.web import static_dir
from web.browser import ConsoleLog, launch_chromium, new_page

pytestmark = pytest.mark.browser


def require_built_web_app() -> Path:
    """The built assets; a failure (not a skip) when missing: scripts/test.sh builds them."""
    root = static_dir()
    if root is None:
        pytest.fail("the web app is not built: run scripts/bootstrap.sh (or scripts/test.sh)")
    return root


@pytest.fixture(scope="module")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_built_web_app()
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("web-data"), port=0, log_level="warning"
    )
    with serve_in_thread(settings) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launch_chromium() as chromium:
        yield chromium


@pytest.fixture
def page_console() -> ConsoleLog:
    return ConsoleLog()


@pytest.fixture
def page(browser: Browser, page_console: ConsoleLog) -> Iterator[Page]:
    page, console = new_page(browser, page_console)
    try:
        yield page
    finally:
        page.context.close()
    assert console.errors == [], f"the page logged errors: {console.errors}"
