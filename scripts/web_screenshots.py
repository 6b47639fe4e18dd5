"""Screenshots of the web app for docs/screenshots/ (referenced by docs/web-app.md).

Two browser windows train titanic together on generated data, as people would by following the
pages; the script photographs the task list, the task page, a training in progress, the server
dashboard during it, the finished training, Test and Predict on that model, and the form that
creates a task. A fresh server on a free loopback port, in a temporary folder.

usage: .venv/bin/python scripts/web_screenshots.py [OUTPUT_DIR]
(needs the test set-up, ./scripts/bootstrap.sh test: the built web app, Chromium, Playwright)
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

root = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(root / "tests"))

from playwright.sync_api import Page, expect  # noqa: E402

from disco.server.runner import serve_in_thread  # noqa: E402
from disco.server.settings import Settings  # noqa: E402
from web.app_pages import WAIT_MS, choose_file, titanic_file, without_column  # noqa: E402
from web.browser import launch_chromium, new_page  # noqa: E402

VIEWPORT = {"width": 1100, "height": 900}


def start_training(page: Page, server: str, data: Path) -> None:
    """Task list -> "Train with my data" -> the file (empty Age cells: skip those rows) -> start."""
    page.goto(server + "/app/")
    page.locator('[data-task-id="titanic"] a', has_text="Train with my data").click()
    choose_file(page, data)
    page.locator('[data-data-error] [data-fix="drop"]').click()
    expect(page.locator(".check")).to_contain_text("Your data is ready", timeout=WAIT_MS)
    page.locator("[data-start]").click()


def settle(page: Page) -> None:
    """No request in flight and the fonts laid out, so the picture is the page at rest."""
    page.wait_for_load_state("networkidle")
    page.evaluate("document.fonts.ready")


def shoot(page: Page, out: Path, name: str) -> None:
    settle(page)
    page.screenshot(path=out / name, full_page=True)
    print(f"  {name}")


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        settings = Settings(data_dir=folder / "data", port=0, log_level="warning")
        with serve_in_thread(settings) as server, launch_chromium() as browser:
            alice, _ = new_page(browser, viewport=VIEWPORT)
            bob, _ = new_page(browser, viewport=VIEWPORT)
            alice.goto(server + "/app/")
            alice.locator("#tasks [data-task-id]").first.wait_for()
            shoot(alice, out, "tasks.png")

            alice.goto(server + "/app/new")
            expect(alice.locator("[data-create]")).to_be_visible(timeout=WAIT_MS)
            shoot(alice, out, "create.png")

            alice_csv = titanic_file(folder, "alice.csv", n=400, seed=1, missing_age=0.2)
            bob_csv = titanic_file(folder, "bob.csv", n=400, seed=2, missing_age=0.2)
            start_training(alice, server, alice_csv)
            start_training(bob, server, bob_csv)
            expect(alice.locator("table.rounds tbody tr")).to_have_count(3, timeout=WAIT_MS)
            dashboard, _ = new_page(browser, viewport=VIEWPORT)
            dashboard.goto(server + "/app/dashboard")
            card = dashboard.locator('#dashboard [data-task-id="titanic"]')
            expect(card.locator("table.history tbody tr")).not_to_have_count(0, timeout=WAIT_MS)
            alice.locator("details:has(table.rounds) summary").click()  # the rounds as a table
            alice.screenshot(path=out / "train-progress.png", full_page=True)  # live: no settle
            print("  train-progress.png")
            dashboard.screenshot(path=out / "dashboard.png", full_page=True)
            print("  dashboard.png")

            for page in (alice, bob):
                expect(page.locator("[data-result]")).to_contain_text(
                    "Training finished", timeout=10 * WAIT_MS
                )
            alice.locator("details:has(table.rounds) summary").click()  # fold the table again
            shoot(alice, out, "train-finished.png")

            task, _ = new_page(browser, viewport=VIEWPORT)
            task.goto(server + "/app/tasks/titanic")
            expect(task.locator("[data-model-size]")).to_contain_text("parameters", timeout=WAIT_MS)
            expect(task.locator("#history table.history")).to_be_visible(timeout=WAIT_MS)
            shoot(task, out, "task.png")

            alice.locator("[data-result] a", has_text="Test the model").click()
            choose_file(alice, titanic_file(folder, "held_out.csv", n=200, seed=3), nth=0)
            expect(alice.locator(".check").nth(0)).to_contain_text("200 rows", timeout=WAIT_MS)
            alice.locator("[data-evaluate]").click()
            expect(alice.locator("[data-accuracy]")).to_have_text(
                re.compile(r"%$"), timeout=WAIT_MS
            )
            labelled = titanic_file(folder, "to_predict.csv", n=30, seed=4)
            unlabelled = without_column(labelled, "Survived", folder / "new_passengers.csv")
            choose_file(alice, unlabelled, nth=1)
            check = alice.locator(".check").nth(1)
            expect(check).to_contain_text("rows to predict", timeout=WAIT_MS)
            alice.locator("[data-predict]").click()
            alice.locator("[data-predictions]").wait_for(timeout=WAIT_MS)
            shoot(alice, out, "test-predict.png")
    print(f"screenshots in {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else root / "docs" / "screenshots")
