"""A JavaScript client (@epfml/discojs-node 2.1.1) and a Python client train `titanic` together.

Both train on their own shard against one server; the node script records the aggregated weights
the JS client adopts per server round (sha256 of float32 bytes), the Python client records what
it receives; wherever both hold the aggregate of the same round it must be the same model.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")

from disco.client import Client, TrainOptions
from disco.client.federated import FederatedSession
from disco.weights import Weights
from interop.datasets import good_shards
from interop.harness import run_node_async

pytestmark = pytest.mark.interop

TASK = "titanic"
JS_SCHEDULE = {"epochs": 2, "roundDuration": 5, "batchSize": 30}


def digest(weights: Weights) -> str:
    return hashlib.sha256(b"".join(np.asarray(w, "<f4").tobytes() for w in weights)).hexdigest()


async def test_js_and_python_clients_share_aggregates(
    interop_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shards = good_shards(tmp_path / "data", 2)
    barrier = tmp_path / "barrier"
    received: dict[int, str] = {}
    original_latest = FederatedSession.latest

    async def recording_latest(self: FederatedSession) -> tuple[int, Weights]:
        round_, weights = await original_latest(self)
        received[round_] = digest(weights)
        if not (barrier / "python.ready").exists():  # start training together with the JS client
            barrier.mkdir(parents=True, exist_ok=True)
            (barrier / "python.ready").write_text("")
            for _ in range(300):
                if len(list(barrier.glob("*.ready"))) >= 2:
                    break
                await asyncio.sleep(0.1)
        return round_, weights

    original_latest_after = FederatedSession.latest_after

    async def recording_latest_after(
        self: FederatedSession, round_: int, timeout_s: float
    ) -> tuple[int, Weights] | None:
        pushed = await original_latest_after(self, round_, timeout_s)
        if pushed is not None:  # a model pushed by the server once the round moved
            received[pushed[0]] = digest(pushed[1])
        return pushed

    original_post_and_wait = FederatedSession.post_and_wait

    async def recording_post_and_wait(
        self: FederatedSession, *args: Any, **kwargs: Any
    ) -> Any:
        outcome = await original_post_and_wait(self, *args, **kwargs)
        if isinstance(outcome, tuple):  # accepted: the model of the round past the post's
            received[outcome[0]] = digest(outcome[1])
        return outcome

    monkeypatch.setattr(FederatedSession, "latest", recording_latest)
    monkeypatch.setattr(FederatedSession, "latest_after", recording_latest_after)
    monkeypatch.setattr(FederatedSession, "post_and_wait", recording_post_and_wait)
    options = {
        **JS_SCHEDULE,
        "csv": [str(shards[0])],
        "barrier": {"dir": str(barrier), "name": "js", "count": 2, "timeoutMs": 30000},
    }
    js_record, history = await asyncio.gather(
        run_node_async(
            "train_federated.mjs", interop_server, TASK, json.dumps(options), timeout=100.0
        ),
        Client(interop_server).train_async(
            TASK, shards[1], TrainOptions(rounds=3, round_timeout_s=20.0)
        ),
    )
    assert js_record["ok"], js_record.get("error")
    js_adopted: dict[int, Any] = {
        p["serverRound"]: p["weights"]["sha256"] for p in js_record["pulls"] if p["adopted"]
    }
    aggregated_rounds = [r for r in history.rounds if r.aggregated]
    assert aggregated_rounds, "the Python client never received an aggregated model"
    assert all(r.participants >= 2 for r in aggregated_rounds)
    assert js_adopted, "the JS client never adopted an aggregated model"
    common = js_adopted.keys() & received.keys()
    assert common, f"no round seen by both: JS {sorted(js_adopted)}, Python {sorted(received)}"
    for round_ in common:
        assert js_adopted[round_] == received[round_], f"round {round_}: different aggregates"
