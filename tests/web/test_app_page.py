"""The web app and the engine module in a real headless Chromium."""

from __future__ import annotations

from playwright.sync_api import Page


def test_app_lists_the_tasks_without_console_error(web_server: str, page: Page) -> None:
    response = page.goto(web_server + "/")
    assert response is not None and response.ok
    assert page.url == web_server + "/app/"
    cards = page.locator("#tasks [data-task-id]")
    cards.first.wait_for()
    assert sorted(cards.evaluate_all("cs => cs.map(c => c.dataset.taskId)")) == [
        "cifar10", "mnist", "titanic",
    ]
    assert "Titanic" in page.locator("#tasks").inner_text()


def test_engine_imports_from_the_server_and_loads_a_model(web_server: str, page: Page) -> None:
    """Another page imports disco.js by URL: tasks, wasm backend, the task's model."""
    page.goto(web_server + "/app/")
    result = page.evaluate(
        """async (server) => {
            const disco = await import(server + "/app/disco.js");
            const backend = await disco.initBackend();
            const tasks = await disco.listTasks(server);
            const model = await disco.loadModel(server, "titanic");
            return {
                backend, version: disco.version, tfBackend: disco.tf.getBackend(),
                tasks: tasks.map((t) => t.taskID).sort(),
                params: model.countParams(), inputs: model.inputs[0].shape,
            };
        }""",
        web_server,
    )
    assert result["backend"] == "wasm" and result["tfBackend"] == "wasm"
    assert result["tasks"] == ["cifar10", "mnist", "titanic"]
    assert result["params"] == 10981
    assert result["inputs"] == [None, 6]
