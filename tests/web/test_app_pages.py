"""The web app's pages in headless Chromium: every page renders without a console error; bad
data is explained and nothing is sent; two browser windows train titanic by following the page;
a task created with the form trains from Python; Test and Predict give a known model's figures;
the dashboard follows a round pushed by the server.

One server and one browser for the module (conftest); tests that train use tasks of their own,
except the titanic walk-through.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
import re
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, Page, WebSocket, expect

from disco.client import Client, TrainOptions
from disco.server.runner import serve_in_thread
from disco.server.settings import Settings
from disco.tasks.artifacts import ModelArtifacts, WeightSpec
from disco.tasks.defaults import titanic_model, titanic_task
from disco.tasks.disco_encoding import encode_disco_model
from disco.tasks.sequential import SequentialBuilder
from disco.tasks.torch_model import TORCH_MODEL_CLASS, TORCH_MODEL_FIELD, not_trainable_reason
from support.robust_ws import FedClient, filled, push_task, small_model
from web.app_pages import (
    WAIT_MS,
    choose_file,
    data_error,
    png,
    titanic_file,
    with_bad_field_counts,
    without_column,
)
from web.browser import ConsoleLog, new_page
from web.engine import run_async

PAGES = {
    "/app/": "Tasks",
    "/app/tasks/titanic": "The data it needs",
    "/app/tasks/titanic/train": "Choose your data",
    "/app/tasks/mnist/train": "Choose a folder",
    "/app/tasks/titanic/test": "Test: how often is it right?",
    "/app/new": "Create a task",
    "/app/dashboard": "Server dashboard",
}


def status(server: str, task_id: str) -> dict[str, Any]:
    return dict(httpx.get(f"{server}/tasks/{task_id}/status").json())


# --------------------------------------------------------------------------- every page


@pytest.mark.parametrize("path", list(PAGES))
def test_every_page_renders_without_console_error(web_server: str, page: Page, path: str) -> None:
    response = page.goto(web_server + path)
    assert response is not None and response.ok
    expect(page.locator("main")).to_contain_text(PAGES[path], timeout=WAIT_MS)
    expect(page.locator(".privacy")).to_contain_text("Your data stays on this machine")
    page.wait_for_load_state("networkidle")
    if path == "/app/tasks/titanic":  # the model's layers and size, from the engine
        size = page.locator("[data-model-size]")
        expect(size).to_contain_text("10,981 parameters", timeout=WAIT_MS)
    if path == "/app/":
        expect(page.locator("#tasks [data-task-id]")).to_have_count(3)
    if path == "/app/dashboard":
        expect(page.locator("#dashboard [data-task-id]")).to_have_count(3, timeout=WAIT_MS)


def test_links_and_keyboard_move_between_pages(web_server: str, page: Page) -> None:
    page.goto(web_server + "/app/")
    expect(page.locator("#tasks")).to_be_visible(timeout=WAIT_MS)
    page.keyboard.press("Tab")  # the skip link comes first
    expect(page.locator(".skip")).to_be_focused()
    page.locator('[data-task-id="titanic"] a', has_text="Train with my data").click()
    expect(page).to_have_url(web_server + "/app/tasks/titanic/train")
    expect(page.locator("h1")).to_be_focused()  # focus moved to the new page's heading
    page.go_back()
    expect(page.locator("#tasks")).to_be_visible()


# --------------------------------------------------------------------------- bad data


def test_bad_data_is_explained_and_nothing_is_sent(
    web_server: str, page: Page, tmp_path: Path
) -> None:
    sockets: list[WebSocket] = []
    page.on("websocket", lambda socket: sockets.append(socket))
    before = status(web_server, "titanic")["round"]
    page.goto(web_server + "/app/tasks/titanic/train")
    start = page.locator("[data-start]")

    empty_ages = titanic_file(tmp_path, n=60, seed=1, missing_age=0.3)
    choose_file(page, empty_ages)
    text = data_error(page)
    assert "have empty cells" in text and "Skip these rows" in text
    assert "column “Age”" in text  # where: file, line and column
    expect(start).to_be_disabled()

    no_fare = without_column(titanic_file(tmp_path, "full.csv", n=20, seed=2), "Fare",
                             tmp_path / "no_fare.csv")  # fmt: skip
    choose_file(page, no_fare)
    text = data_error(page)
    assert "does not have all the columns" in text and "'Fare'" in text
    expect(start).to_be_disabled()

    bad_counts = with_bad_field_counts(titanic_file(tmp_path, "ok.csv", n=20, seed=3),
                                       tmp_path / "bad_counts.csv", lines=(4, 9))  # fmt: skip
    choose_file(page, bad_counts)
    text = data_error(page)
    assert "as many values as the first line" in text
    assert "bad_counts.csv, line 4" in text and "bad_counts.csv, line 9" in text
    expect(start).to_be_disabled()

    # the page's own fix: skip the rows with empty cells, then the data is ready
    choose_file(page, empty_ages)
    page.locator('[data-data-error] [data-fix="drop"]').click()
    expect(page.locator(".check")).to_contain_text("Your data is ready", timeout=WAIT_MS)
    expect(page.locator(".check")).to_contain_text("Dropped")
    expect(start).to_be_enabled()

    page.goto(web_server + "/app/tasks/mnist/train")
    images = tmp_path / "digits"
    for label, size in (("3", (28, 28)), ("7", (20, 20))):
        (images / label).mkdir(parents=True)
        (images / label / "a.png").write_bytes(png(*size, seed=int(label)))
    page.locator('input[data-input="files"]').set_input_files(
        [{"name": f"{label}/a.png", "mimeType": "image/png",
          "buffer": (images / label / "a.png").read_bytes()} for label in ("3", "7")]
    )  # fmt: skip
    text = data_error(page)
    assert "do not have the size this task expects" in text and "20x20" in text
    assert "Resize the images for me" in text
    expect(page.locator("[data-start]")).to_be_disabled()

    assert sockets == []  # nothing was sent: no training connection was ever opened
    assert status(web_server, "titanic")["round"] == before


# --------------------------------------------------------------------------- training


def open_train_page(browser: Browser, server: str) -> tuple[Page, ConsoleLog]:
    """A new window on the task list, then the titanic card's "Train" button, as a person would."""
    page, log = new_page(browser, viewport={"width": 1000, "height": 900})
    page.goto(server + "/app/")
    page.locator('[data-task-id="titanic"] a', has_text="Train with my data").click()
    expect(page.locator("h1")).to_contain_text("Titanic")
    return page, log


def give_titanic_data(page: Page, path: Path) -> None:
    """The real titanic file has empty Age cells: pick it, then follow the page's advice."""
    choose_file(page, path)
    page.locator('[data-data-error] [data-fix="drop"]').click()
    expect(page.locator(".check")).to_contain_text("Your data is ready", timeout=WAIT_MS)


def test_a_training_that_waits_for_others_can_be_stopped(
    web_server: str, page: Page, tmp_path: Path
) -> None:
    # a task of its own: the update this run sends before it waits stays in that task's round
    task = {**titanic_task(), "taskID": "titanic-stop"}
    post_task(web_server, task, titanic_model(np.random.default_rng(0)))
    page.goto(web_server + "/app/tasks/titanic-stop/train")
    give_titanic_data(page, titanic_file(tmp_path, n=60, seed=21, missing_age=0.2))
    page.locator("[data-start]").click()
    status_line = page.locator("[data-training-status]")
    expect(status_line).to_contain_text("Waiting for 1 more person to join", timeout=WAIT_MS)
    page.locator("[data-stop]").click()
    expect(status_line).to_contain_text("Training stopped", timeout=WAIT_MS)
    expect(page.locator("[data-stop]")).to_be_hidden()
    expect(page.locator("[data-result]")).to_contain_text("No round was completed")
    expect(page.locator("[data-start]")).to_have_text("Train again")
    expect(page.locator("[data-start]")).to_be_enabled()


def test_the_pages_say_how_data_is_protected_and_show_the_privacy_loss(
    web_server: str, page: Page, tmp_path: Path
) -> None:
    """Who sees an update, the DP target and budget, before any data is given; then the ε
    spent, round by round, while one browser trains a DP task alone."""
    info = titanic_task()["trainingInformation"]
    dp = {
        **titanic_task(),
        "taskID": "titanic-dp",
        "trainingInformation": {
            **info,
            "epochs": 3,
            "roundDuration": 2,
            "minNbOfParticipants": 1,
            "privacy": {
                "differentialPrivacy": {"epsilon": 4, "delta": 1e-5},
                "budget": {"epsilon": 4, "onExhausted": "stop"},
            },
        },
    }
    secure = {
        **titanic_task(),
        "taskID": "titanic-secure",
        "trainingInformation": {**info, "aggregationStrategy": "secure", "minNbOfParticipants": 3},
    }
    for task in (dp, secure):
        post_task(web_server, task, titanic_model(np.random.default_rng(0)))

    page.goto(web_server + "/app/tasks/titanic")
    facts = page.locator("[data-privacy]")
    expect(facts).to_contain_text("Your data stays on your device", timeout=WAIT_MS)
    expect(facts).to_contain_text("The server sees each participant's model update")
    expect(facts).to_contain_text("No noise is added to your updates")
    page.goto(web_server + "/app/tasks/titanic-secure")
    expect(page.locator("[data-privacy]")).to_contain_text(
        "the server only ever learns the sum of the participants' updates", timeout=WAIT_MS
    )
    page.goto(web_server + "/app/tasks/titanic-dp/train")
    facts = page.locator("[data-privacy]")
    expect(facts).to_contain_text("reveal at most ε = 4.0 about your data (δ = 0.00001)",
                                  timeout=WAIT_MS)  # fmt: skip
    expect(facts).to_contain_text("Your training stops before your privacy loss would pass ε = 4.0")
    expect(facts).not_to_contain_text("No noise")

    give_titanic_data(page, titanic_file(tmp_path, n=60, seed=31, missing_age=0.2))
    page.locator("[data-start]").click()
    expect(page.locator("[data-result]")).to_contain_text("Training finished", timeout=WAIT_MS)
    spent = page.locator("[data-epsilon]").inner_text()
    pattern = r"Privacy loss so far: ε = ([0-9.]+) of your budget of 4\.0 \(δ = 0\.00001\)\."
    match = re.fullmatch(pattern, spent)
    assert match is not None, spent
    assert 0 < float(match.group(1)) <= 4.0
    header = page.locator("details table.rounds thead th").all_text_contents()
    assert header[-1] == "Privacy loss ε"
    cells = page.locator("details table.rounds tbody tr td:last-child").all_text_contents()
    assert len(cells) >= 2
    values = [float(cell) for cell in cells]
    assert values == sorted(values) and values[-1] == float(match.group(1))  # ε only grows


def test_two_browser_windows_train_titanic_by_following_the_page(
    web_server: str, browser: Browser, tmp_path: Path
) -> None:
    """End to end as a person: task list -> task page -> train (with a second window) -> the
    progress, the result and the model download -> the Test page's accuracy of that model."""
    before = status(web_server, "titanic")["round"]
    alice, alice_log = new_page(browser, viewport={"width": 1000, "height": 900})
    alice.goto(web_server + "/app/")
    alice.locator('[data-task-id="titanic"] a', has_text="About this task").click()
    expect(alice.locator("#history")).to_contain_text("No round", timeout=WAIT_MS)
    expect(alice.locator("[data-model-size]")).to_contain_text("parameters", timeout=WAIT_MS)
    alice.locator("main a.button", has_text="Train with my data").click()
    expect(alice.locator("h1")).to_contain_text("Train")
    bob, bob_log = open_train_page(browser, web_server)
    try:
        alice_csv = titanic_file(tmp_path, "alice.csv", n=130, seed=11, missing_age=0.2)
        give_titanic_data(alice, alice_csv)
        alice.locator("[data-start]").click()
        # alone, Alice is told what the round waits for: one more person
        expect(alice.locator("[data-training-status]")).to_contain_text(
            "Waiting for 1 more person to join", timeout=WAIT_MS
        )
        bob_csv = titanic_file(tmp_path, "bob.csv", n=130, seed=12, missing_age=0.2)
        give_titanic_data(bob, bob_csv)
        bob.locator("[data-start]").click()
        for page in (alice, bob):
            result = page.locator("[data-result]")
            expect(result).to_contain_text("Training finished", timeout=WAIT_MS)
            expect(page.locator("[data-download-model]")).to_be_visible()
            expect(page.locator("[data-participants]")).to_contain_text("2 participants")
            rows = page.locator("details table.rounds tbody tr")
            assert rows.count() >= 2
        assert status(web_server, "titanic")["round"] > before
        with alice.expect_download() as download:
            alice.locator("[data-download-model]").click()
        name = download.value.suggested_filename
        assert name in ("titanic-model.json", "titanic-model.weights.bin")

        # the model just trained, tested on other labelled data
        alice.locator("[data-result] a", has_text="Test the model").click()
        expect(alice.locator('input[value="trained"]')).to_be_checked(timeout=WAIT_MS)
        choose_file(alice, titanic_file(tmp_path, "held_out.csv", n=80, seed=13), nth=0)
        expect(alice.locator(".check").nth(0)).to_contain_text("80 rows", timeout=WAIT_MS)
        alice.locator("[data-evaluate]").click()
        expect(alice.locator("[data-accuracy]")).to_have_text(re.compile(r"^\d+\.\d%$"),
                                                               timeout=WAIT_MS)  # fmt: skip
        assert alice.locator("[data-confusion] tbody tr").count() == 2  # survived: 0 or 1
    finally:
        for page in (alice, bob):
            page.context.close()
    assert alice_log.errors == [] and bob_log.errors == []


# --------------------------------------------------------------------------- PyTorch-only task


def post_task(server: str, task: dict[str, Any], artifacts: ModelArtifacts) -> None:
    """POST /tasks with the task and its model files, as the Python client uploads them."""
    model_json = json.dumps(artifacts.to_layers_json()).encode()
    files = {
        "task.json": ("task.json", json.dumps(task).encode(), "application/json"),
        "model.json": ("model.json", model_json, "application/json"),
        "weights.bin": ("weights.bin", artifacts.weight_data, "application/octet-stream"),
    }
    response = httpx.post(f"{server}/tasks", files=files)
    assert response.status_code == 201, response.text


def post_torch_only_task(server: str, task_id: str) -> str:
    """A PyTorch-only task, as `disco create --torch-only` publishes it (no torch needed here)."""
    factory = "my_models:make_net"
    reason = not_trainable_reason(task_id, factory)
    task = {**titanic_task(), "taskID": task_id}
    task[TORCH_MODEL_FIELD] = {"factory": factory, "reason": reason}
    config = {"factory": factory, "input_shape": [6], "outputs": "logits"}
    topology = {"class_name": TORCH_MODEL_CLASS, "config": config}
    specs = [WeightSpec("fc.weight", (1, 6)), WeightSpec("fc.bias", (1,))]
    artifacts = ModelArtifacts(topology, specs, np.zeros(7, dtype="<f4").tobytes())
    post_task(server, task, artifacts)
    return reason


def test_a_pytorch_only_task_is_shown_as_not_trainable_in_the_browser(
    web_server: str, page: Page
) -> None:
    reason = post_torch_only_task(web_server, "torch-only")
    page.goto(web_server + "/app/")
    card = page.locator('#tasks [data-task-id="torch-only"]')
    expect(card.locator("[data-python-only]")).to_have_text("Python client only", timeout=WAIT_MS)
    expect(card.locator("a", has_text="Train with my data")).to_have_count(0)
    titanic = page.locator('#tasks [data-task-id="titanic"]')
    expect(titanic.locator("a", has_text="Train with my data")).to_be_visible()
    for path in ("", "/train", "/test"):  # the task page and the pages a link could lead to
        page.goto(f"{web_server}/app/tasks/torch-only{path}")
        notice = page.locator("[data-not-trainable]")
        expect(notice).to_contain_text("cannot be trained in a browser", timeout=WAIT_MS)
        notice.locator("summary").click()
        expect(notice).to_contain_text(reason)
        expect(page.locator("[data-start], [data-evaluate], input[type=file]")).to_have_count(0)
    expect(page.locator(".privacy")).to_contain_text("Your data stays on this machine")
    # the engine's own API says the same, and its train() refuses before loading or sending
    sockets: list[WebSocket] = []
    page.on("websocket", lambda socket: sockets.append(socket))
    engine = page.evaluate("""async () => {
        const disco = await import("/app/disco.js");
        const [torch, titanic] = await Promise.all(
            ["torch-only", "titanic"].map((id) => disco.getTask(location.origin, id)));
        const data = { kind: "tabular", size: 1, sampleShape: [6], x: new Float32Array(6),
                       y: new Float32Array(1), sources: ["2"], notes: [] };
        const refused = await disco.train({ server: location.origin, task: torch, data }).done
            .then(() => "trained", (error) => String(error.message));
        return { torch: disco.notTrainableReason(torch),
                 titanic: disco.notTrainableReason(titanic), refused };
    }""")
    assert engine == {"torch": reason, "titanic": None, "refused": reason}
    assert sockets == []


# --------------------------------------------------------------------------- create a task


def fill_form(page: Page, task_id: str, batch_size: str) -> None:
    page.fill('[name="taskID"]', task_id)
    page.fill('[name="displayInformation.taskTitle"]', "Made with the form")
    page.fill('[name="displayInformation.summary.preview"]', "A task made in the browser")
    page.fill('[name="trainingInformation.inputColumns"]', "x1, x2")
    page.fill('[name="trainingInformation.outputColumns"]', "y")
    page.fill('[name="template.hidden"]', "8")
    page.fill('[name="trainingInformation.epochs"]', "2")
    page.fill('[name="trainingInformation.batchSize"]', batch_size)
    page.fill('[name="trainingInformation.roundDuration"]', "2")
    page.fill('[name="trainingInformation.learningRate"]', "0.01")
    page.fill('[name="trainingInformation.minNbOfParticipants"]', "1")


def test_a_task_created_with_the_form_trains_from_python(
    web_server: str, browser: Browser, tmp_path: Path
) -> None:
    page, log = new_page(browser)
    try:
        page.goto(web_server + "/app/new")
        fill_form(page, "form-task", batch_size="0")
        page.locator("[data-create]").click()
        # the server's own reason (400), next to the field it names, which gets the focus
        field = page.locator('[data-field="trainingInformation.batchSize"]')
        expect(field.locator(".field-error")).to_have_text("Must be at least 1.", timeout=WAIT_MS)
        expect(field.locator("input")).to_be_focused()
        assert httpx.get(f"{web_server}/tasks/form-task").status_code == 404

        page.fill('[name="trainingInformation.batchSize"]', "8")
        page.locator("[data-create]").click()
        expect(page.locator('[data-created="form-task"]')).to_be_visible(timeout=WAIT_MS)
    finally:
        page.context.close()
    # the refused request is logged by the browser as a failed resource: nothing else may be
    assert [e for e in log.errors if "status of 400" not in e] == [], log.errors

    rng = np.random.default_rng(0)
    x = rng.random((64, 2))
    data = tmp_path / "form.csv"
    data.write_text("x1,x2,y\n" + "".join(f"{a:.4f},{b:.4f},{int(a > b)}\n" for a, b in x))
    history = Client(web_server).train("form-task", data, TrainOptions(rounds=3, seed=0))
    assert len(history.rounds) == 3 and all(math.isfinite(r.loss) for r in history.rounds)
    rounds = httpx.get(f"{web_server}/tasks/form-task/history").json()["rounds"]
    assert [r["round"] for r in rounds] == [1, 2, 3]
    assert all(r["contributions"] == 1 for r in rounds)


def test_the_form_asks_for_the_admin_token_when_the_server_wants_one(
    browser: Browser, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "data", port=0, log_level="warning",
                        load_default_tasks=False, admin_token="s3cret")  # fmt: skip
    with serve_in_thread(settings) as server:
        page, log = new_page(browser)
        try:
            page.goto(server + "/app/new")
            fill_form(page, "guarded", batch_size="8")
            token = page.locator('[name="admin"]')
            expect(token).to_be_hidden()
            page.locator("[data-create]").click()
            expect(token).to_be_focused(timeout=WAIT_MS)
            problem = page.locator('[data-field="admin"] .field-error')
            expect(problem).to_contain_text("needs its admin token")
            token.fill("wrong")
            page.locator("[data-create]").click()
            expect(problem).to_contain_text("refused")
            token.fill("s3cret")
            page.locator("[data-create]").click()
            expect(page.locator('[data-created="guarded"]')).to_be_visible(timeout=WAIT_MS)
        finally:
            page.context.close()
    # 401 and 403 answers are expected here: the browser logs them as failed resources
    assert all("401" in e or "403" in e for e in log.errors), log.errors


# --------------------------------------------------------------------------- test and predict


def known_model_task(server: str) -> str:
    """A task whose model says 1 exactly when x1 > 0.5: one sigmoid unit, w = (20, 0), b = -10."""
    model = SequentialBuilder((2,)).dense(1, "sigmoid").build(np.random.default_rng(0))
    model = model.with_weights([np.array([[20.0], [0.0]]), np.array([-10.0])])
    base = titanic_task()
    info = {**base["trainingInformation"], "inputColumns": ["x1", "x2"], "outputColumns": ["y"],
            "scheme": "federated"}  # fmt: skip
    task = {**base, "taskID": "known", "trainingInformation": info}
    body = {"task": task, "model": list(encode_disco_model(model))}
    response = httpx.post(f"{server}/tasks", json=body)
    assert response.status_code == 201, response.text
    return "known"


def test_test_and_predict_give_the_known_model_s_figures(
    web_server: str, page: Page, tmp_path: Path
) -> None:
    known_model_task(web_server)
    # x1 > 0.5 -> the model says 1. Labels: 3 true 0 (one of them wrongly predicted 1: x1 = 0.8
    # with y = 0), 2 true 1 (both right): accuracy 4/5, confusion [[2, 1], [0, 2]].
    labelled = tmp_path / "labelled.csv"
    labelled.write_text("x1,x2,y\n0.1,5,0\n0.2,1,0\n0.8,0,0\n0.9,3,1\n0.7,2,1\n")
    unlabelled = tmp_path / "new.csv"
    unlabelled.write_text("x1,x2\n0.25,0\n0.75,9\n0.45,1\n")

    page.goto(web_server + "/app/tasks/known/test")
    choose_file(page, labelled, nth=0)
    expect(page.locator(".check").nth(0)).to_contain_text("5 rows", timeout=WAIT_MS)
    page.locator("[data-evaluate]").click()
    expect(page.locator("[data-accuracy]")).to_have_text("80.0%", timeout=WAIT_MS)
    cells = page.locator("[data-confusion] tbody tr").evaluate_all(
        "rows => rows.map(r => Array.from(r.querySelectorAll('td'), c => Number(c.textContent)))"
    )
    assert cells == [[2, 1], [0, 2]]

    choose_file(page, unlabelled, nth=1)
    expect(page.locator(".check").nth(1)).to_contain_text("3 rows to predict", timeout=WAIT_MS)
    page.locator("[data-predict]").click()
    page.locator("[data-predictions]").wait_for(timeout=WAIT_MS)
    with page.expect_download() as download:
        page.locator("[data-download-predictions]").click()
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert [row["label"] for row in rows] == ["0", "1", "0"]
    expected = [1 / (1 + math.exp(-(20 * x - 10))) for x in (0.25, 0.75, 0.45)]
    assert np.allclose([float(row["output_0"]) for row in rows], expected, atol=1e-5)


# --------------------------------------------------------------------------- dashboard


def test_the_dashboard_follows_a_round_pushed_by_the_server(web_server: str, page: Page) -> None:
    page.goto(web_server + "/app/dashboard")
    expect(page.locator(".live")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))

    task_id = run_async(lambda: push_task(web_server, model=small_model(), minNbOfParticipants=2))
    card = page.locator(f'#dashboard [data-task-id="{task_id}"]')
    expect(card.locator("[data-round]")).to_have_text("0", timeout=WAIT_MS)

    async def one_round() -> None:
        one, two = [await FedClient.open(web_server, task_id) for _ in range(2)]
        round_, weights = await one.latest()
        shapes = [tuple(w.shape) for w in weights]
        await asyncio.gather(
            one.post(filled(shapes, 1.0), round_), two.post(filled(shapes, 2.0), round_)
        )
        await one.close()
        await two.close()

    run_async(one_round)
    expect(card.locator("[data-round]")).to_have_text("1", timeout=WAIT_MS)
    expect(card.locator("table.history tbody tr")).to_have_count(1)
    expect(card.locator("table.history tbody td").nth(2)).to_have_text("2")  # models combined
    expect(card.locator("[data-federated]")).to_have_text("0", timeout=WAIT_MS)  # both left
    assert requests == []  # pushed by the server: the page asked for nothing meanwhile
