"""Two browser pages and one Python client train titanic together through the server.

Each records the global weights it adopted, by the round they belong to; for every round two
of them share, the weights are identical (they are the server's aggregate), and the server's
model is no longer the one it started with.
"""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, Page, WebSocket

from disco.client.api import model_for
from disco.client.data.tabular import load_tabular
from disco.client.federated import FederatedCommunicator, FederatedSession
from disco.client.options import TrainOptions
from disco.client.remote import fetch_model, fetch_task
from disco.client.session import Exchange, run_training
from disco.client.training import LocalTrainer
from disco.protocol.framing import unpack_message
from disco.simulation.builtin_data import titanic_like_csv
from disco.weights import Weights
from web.browser import ConsoleLog, new_page
from web.engine import open_engine, run_async, text_file_arg

ROUNDS = 3
ROWS = 300  # 10 batches of 30: one round per epoch
TASK = "titanic-trio"

START_TRAINING = """async ({file, rounds, seed}) => {
    const task = await disco.getTask(server, "titanic-trio");
    const data = await disco.readTabular(task, fileFrom(file.name, file.data, file.type));
    window.adopted = {};
    window.waiting = [];
    window.run = disco.train({ server, task, data, rounds, seed, roundTimeoutMs: 60000 });
    window.run.on("waiting", (event) => window.waiting.push(event.reason));
    const model = await window.run.model;
    window.run.on("round", (record) => {
        if (record.aggregated) {
            window.adopted[record.nextRound] =
                model.getWeights().map((w) => Array.from(w.dataSync()));
        }
    });
    return true;
}"""

FINISH = """async () => {
    const result = await window.run.done;
    return { result, adopted: window.adopted, waiting: window.waiting };
}"""


class RecordingCommunicator(FederatedCommunicator):
    """The Python client's federated rounds, keeping each adopted global model by its round."""

    adopted: dict[int, Weights]

    async def exchange(
        self, weights: Weights, round_: int, num_samples: int, epsilon: float | None = None
    ) -> Exchange:
        result = await super().exchange(weights, round_, num_samples, epsilon)
        if result.weights is not None:
            self.adopted[result.round] = [np.array(w) for w in result.weights]
        return result


def train_python(server: str, csv_text: str, tmp_csv: Any) -> dict[int, Weights]:
    tmp_csv.write_text(csv_text)

    async def main() -> dict[int, Weights]:
        async with httpx.AsyncClient(timeout=30) as http:
            task = await fetch_task(http, server, TASK)
            remote = await fetch_model(http, server, TASK)
        info = task.training_information
        data = load_tabular(tmp_csv, info.input_columns or [], info.output_columns or [])
        model = model_for(remote.artifacts)
        trainer = LocalTrainer(model, info, seed=11)
        async with FederatedSession(server, TASK) as session:
            start, weights = await session.latest()
            model.set_tfjs_weights(weights)
            communicator = RecordingCommunicator(session, round_timeout_s=60)
            communicator.adopted = {}
            await run_training(task, trainer, data, communicator, "federated",
                               TrainOptions(rounds=ROUNDS, seed=11), start_round=start)
            return communicator.adopted

    return run_async(main)


def record_sent(page: Page, sent: list[dict[str, Any]]) -> None:
    """Keep every message the page sends on its WebSockets (the federated one here)."""

    def on_socket(socket: WebSocket) -> None:
        socket.on("framesent", lambda payload: sent.append(unpack_message(payload))
                  if isinstance(payload, bytes) else None)  # fmt: skip

    page.on("websocket", on_socket)


def add_trio_task(server: str) -> None:
    """titanic with a quorum of 3: every round waits for the three participants."""
    task = httpx.get(f"{server}/tasks/titanic").json()
    task["taskID"] = TASK
    task["trainingInformation"]["minNbOfParticipants"] = 3
    model = httpx.get(f"{server}/tasks/titanic/model.json?format=disco").json()
    response = httpx.post(f"{server}/tasks", json={"task": task, "model": model}, timeout=30)
    assert response.status_code == 201, response.text


@pytest.mark.slow
def test_two_browsers_and_python_train_titanic_together(
    web_server: str, browser: Browser, tmp_path: Any
) -> None:
    add_trio_task(web_server)
    before = httpx.get(f"{web_server}/tasks/{TASK}/weights.bin").content
    pages: list[tuple[Page, ConsoleLog]] = []
    sent: list[list[dict[str, Any]]] = [[], []]
    try:
        for seed in (1, 2):
            page, console = new_page(browser)
            pages.append((page, console))
            record_sent(page, sent[seed - 1])
            open_engine(page, web_server)
            csv_text = titanic_like_csv(n=ROWS, seed=seed)
            page.evaluate(START_TRAINING, {"file": text_file_arg(f"p{seed}.csv", csv_text),
                                           "rounds": ROUNDS, "seed": seed})
        python = train_python(web_server, titanic_like_csv(n=ROWS, seed=3), tmp_path / "py.csv")
        outcomes = [page.evaluate(FINISH) for page, _ in pages]
    finally:
        for page, _ in pages:
            page.context.close()
    for _, console in pages:
        assert console.errors == []
    # A round is one request: every post awaits the round, no separate waiting request.
    for messages in sent:
        posts = [m for m in messages if m["type"] == 8]
        assert len(posts) >= ROUNDS and all(m.get("awaitRound") is True for m in posts)
        assert not any(m["type"] == 11 and "afterRound" in m for m in messages)

    browsers = [
        {int(r): [np.asarray(w, np.float32) for w in ws] for r, ws in o["adopted"].items()}
        for o in outcomes
    ]
    # the server's round status frames became "waiting" events (of the browsers that waited:
    # the last to contribute to every round may never have had to)
    reasons = {"participants", "contributions", "aggregation"}
    assert any(set(outcome["waiting"]) & reasons for outcome in outcomes)
    for outcome in outcomes:
        assert len(outcome["result"]["rounds"]) == ROUNDS
        assert not outcome["result"]["stopped"]
        assert outcome["result"]["samplesPerSecond"] > 0
    everyone = [*browsers, python]
    shared = 0
    for i, a in enumerate(everyone):
        for b in everyone[i + 1:]:
            for round_ in sorted(a.keys() & b.keys()):
                shared += 1
                for x, y in zip(a[round_], b[round_], strict=True):
                    np.testing.assert_array_equal(x.ravel(), np.asarray(y).ravel())
    assert shared >= ROUNDS  # the three took part in common rounds
    assert python and all(browsers)
    after = httpx.get(f"{web_server}/tasks/{TASK}/weights.bin").content
    assert after != before
    status = httpx.get(f"{web_server}/tasks/{TASK}/status").json()
    assert status["round"] >= ROUNDS
