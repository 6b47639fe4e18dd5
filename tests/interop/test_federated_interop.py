"""Federated training of `titanic` by real 2.1.1 clients (discojs.Disco) against `disco-server`.

Each client runs in its own node process on its own CSV shard; the node script records every
update it posts and every (round, weights) answer it gets, as sha256 digests of float32 bytes,
which the test compares with what the server serves over HTTP.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from interop.datasets import good_shards, nan_csv
from interop.harness import ROUND_DEADLINE_S, get_json, run_node_async, served_tensors

pytestmark = pytest.mark.interop

TASK = "titanic"
NODE_TIMEOUT = 100.0
# 2 epochs of ~15 batches of 30 rows, a round every 5 batches: ~6 rounds per client, a few seconds.
SCHEDULE = {"epochs": 2, "roundDuration": 5, "batchSize": 30}


def served_model(base: str) -> tuple[str, bool]:
    """(sha256 of all weights' float32 bytes in manifest order, all finite) of the served model."""
    tensors = served_tensors(f"{base}/tasks/{TASK}/model.json?format=tfjs")
    data = b"".join(raw for _, _, raw in tensors)
    finite = bool(np.isfinite(np.frombuffer(data, dtype="<f4")).all())
    return hashlib.sha256(data).hexdigest(), finite


def server_round(base: str) -> int:
    """The federated round the server is in for the task (GET /tasks/{id}/status)."""
    return int(get_json(f"{base}/tasks/{TASK}/status")["round"])


async def train(base: str, name: str, csv: Path, barrier: Path, count: int) -> Any:
    """One real client training the task; returns the node script's record."""
    options = {
        **SCHEDULE,
        "csv": [str(csv)],
        "barrier": {"dir": str(barrier), "name": name, "count": count, "timeoutMs": 30000},
    }
    return await run_node_async(
        "train_federated.mjs", base, TASK, json.dumps(options), timeout=NODE_TIMEOUT
    )


async def settle() -> None:
    """Let a round opened by the last updates hit its deadline, so the served model is final."""
    await asyncio.sleep(ROUND_DEADLINE_S + 1.0)


def adopted(record: dict[str, Any]) -> dict[int, str]:
    """Server round -> sha256 of the aggregated weights this client adopted in that round."""
    return {p["serverRound"]: p["weights"]["sha256"] for p in record["pulls"] if p["adopted"]}


async def test_two_clients_train_together(interop_server: str, tmp_path: Path) -> None:
    """Both clients post every round, adopt the same aggregates, and the served model moves."""
    base = interop_server
    initial_sha, _ = served_model(base)
    first_round = server_round(base)
    shards = good_shards(tmp_path / "data", 2)
    records = await asyncio.gather(
        *(train(base, f"c{i}", shard, tmp_path / "barrier", 2) for i, shard in enumerate(shards))
    )
    await settle()

    for record in records:
        assert record["ok"], record.get("error")
        assert record["closes"] == [], f"the server closed the connection: {record['closes']}"
        assert len(record["posts"]) >= 4, record["posts"]
        assert all(post["weights"]["finite"] for post in record["posts"])
        assert len(record["pulls"]) == len(record["posts"])  # every round-end got its answer
        assert adopted(record), f"client {record['clientID']} never got aggregated weights"
        assert all(p["weights"]["finite"] for p in record["pulls"] if p["adopted"])
        assert all(s["round"] >= first_round for s in record["statistics"]), record["statistics"]

    # An aggregate is the same model for everyone who adopts it.
    first, second = (adopted(record) for record in records)
    for round_ in first.keys() & second.keys():
        assert first[round_] == second[round_], f"round {round_}: clients got different weights"

    final_round = server_round(base)
    final_sha, finite = served_model(base)
    latest = max(first.keys() | second.keys())
    assert final_round >= latest > first_round
    assert finite
    assert final_sha != initial_sha, "the served model did not change"
    if final_round == latest:  # no round aggregated after the clients' last pull
        assert final_sha == (first | second)[latest], "the served model is not the last aggregate"


async def test_nan_update_is_refused(interop_server: str, tmp_path: Path) -> None:
    """A client training on data with empty Age cells posts NaN weights: the server refuses them,
    the served model stays finite and the honest client completes its training."""
    base = interop_server
    good = good_shards(tmp_path / "data", 2)[0]
    bad = nan_csv(tmp_path / "data")
    honest, poisoned = await asyncio.gather(
        train(base, "good", good, tmp_path / "barrier", 2),
        train(base, "nan", bad, tmp_path / "barrier", 2),
    )
    await settle()

    # The scenario really happened: the poisoned client did post non-finite weights.
    assert any(not post["weights"]["finite"] for post in poisoned["posts"]), poisoned["posts"]
    assert honest["ok"], honest.get("error")
    assert honest["closes"] == [], f"the server closed the honest client: {honest['closes']}"
    assert len(honest["pulls"]) == len(honest["posts"]) >= 4
    for name, record in (("honest", honest), ("poisoned", poisoned)):
        received = [p["weights"]["finite"] for p in record["pulls"] if p["adopted"]]
        assert all(received), f"the {name} client received non-finite global weights"
    _, finite = served_model(base)
    assert finite, "NaN reached the served model"
