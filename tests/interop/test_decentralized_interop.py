"""Decentralized learning with real DISCO 2.1.1 JavaScript peers through our signaling server.

Three node processes per test (the real `@epfml/discojs-node` client), each one peer, meet on
`/deai/{taskID}` of a `disco-server` subprocess; weights travel peer to peer over WebRTC kept on
loopback (node/loopback_wrtc.cjs: no ICE servers, loopback-only signals, selected pair checked;
node/loopback_ifaddrs.c preloaded so libwebrtc gathers on lo only).

- ClearText and SecAgg peers: each peer hands distinct weights (titanic model shapes) to the
  client's per-round entry point `onRoundEndCommunication` for two rounds; each must get back the
  mean of the three. (On any failure the 2.1.1 client silently returns its own weights, so
  comparing with the mean is the only meaningful check.)
- A full decentralized training of a titanic task: every round of every peer aggregated with
  both others, each peer's result the mean of what the three shared, same final model everywhere.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from interop.datasets import good_shards, read_rows
from interop.p2p import (
    BATCH_SIZE,
    CLEAR_TASK,
    EPOCHS,
    PEERS,
    ROUND_DURATION,
    SCRIPT_TIMEOUT_MS,
    SECURE_TASK,
    aggregation_requests,
    check_loopback,
    check_means,
    decode_tensors,
    idle_peer,
    max_abs_diff,
    mean_of,
    peer_inputs,
    run_peers,
    titanic,
)

pytestmark = [pytest.mark.interop, pytest.mark.timeout(90)]


@pytest.mark.parametrize(
    ("task_id", "client_class", "tolerance"),
    [
        (CLEAR_TASK, "ClearText", 1e-5),
        # Shares are uniform in (-100, 100) float32: the sums lose ~1e-5 of absolute precision.
        (SECURE_TASK, "SecAgg", 1e-3),
    ],
)
async def test_peers_end_each_round_with_the_mean(
    decentralized_server: str, tmp_path: Path, task_id: str, client_class: str, tolerance: float
) -> None:
    """Three real peers aggregate twice through our server; each gets the mean of the three."""
    _, artifacts = titanic()
    shapes = artifacts.shapes()
    inputs = [peer_inputs(1000 + peer, shapes) for peer in range(PEERS)]
    requests = aggregation_requests(decentralized_server, task_id, inputs)
    results = await run_peers("decentralized_aggregate.mjs", requests, tmp_path)

    assert len({r["id"] for r in results}) == PEERS, "the server must give distinct peer ids"
    for result in results:
        assert result["clientClass"] == client_class
        check_loopback(result, PEERS - 1)
    check_means(results, inputs, tolerance)


async def test_round_starts_without_a_connected_peer_that_is_not_ready(
    decentralized_server: str, tmp_path: Path
) -> None:
    """A fourth peer is connected but never ready: the three ready ones still aggregate.

    The server waits for it up to its readiness deadline; a 2.1.1 client gives up a round when
    PeersForRound has not come 10 s (MAX_WAIT_PER_ROUND) after its PeerIsReady, so the deadline
    must end well before that.
    """
    _, artifacts = titanic()
    inputs = [peer_inputs(2000 + peer, artifacts.shapes()) for peer in range(PEERS)]
    requests = aggregation_requests(decentralized_server, CLEAR_TASK, inputs)
    async with idle_peer(decentralized_server, CLEAR_TASK) as idle_id:
        results = await run_peers("decentralized_aggregate.mjs", requests, tmp_path)
    assert idle_id not in {r["id"] for r in results}
    check_means(results, inputs, 1e-5)


async def test_decentralized_training_completes(decentralized_server: str, tmp_path: Path) -> None:
    """Three real peers train titanic together; every round is a true average of all three."""
    shards = good_shards(tmp_path / "data", PEERS)
    batches = [EPOCHS * math.ceil(len(read_rows(path)) / BATCH_SIZE) for path in shards]
    assert len(set(batches)) == 1, f"peers would train different round counts: {batches}"
    expected_rounds = batches[0] // ROUND_DURATION
    assert expected_rounds >= 2
    requests = [
        {
            "url": decentralized_server,
            "taskID": CLEAR_TASK,
            "csv": [str(path)],
            "timeoutMs": SCRIPT_TIMEOUT_MS,
        }
        for path in shards
    ]
    results = await run_peers("decentralized_train.mjs", requests, tmp_path)

    assert len({r["id"] for r in results}) == PEERS
    for result in results:
        assert result["clientClass"] == "ClearText"
        assert result["finite"], "NaN/inf in the trained model"
        assert [r["round"] for r in result["rounds"]] == list(range(1, expected_rounds + 1))
        assert all(r["aggregated"] for r in result["rounds"]), "a round fell back to own weights"
        assert all(r["participants"] == PEERS for r in result["rounds"])
        assert len(result["trainAccuracy"]) == EPOCHS
        check_loopback(result, PEERS - 1)

    for index in range(expected_rounds):
        shared = [decode_tensors(r["rounds"][index]["sent"]) for r in results]
        expected = mean_of(shared)
        assert max_abs_diff(shared[0], expected) > 0, "peers shared identical weights"
        for peer, result in enumerate(results):
            received = decode_tensors(result["rounds"][index]["received"])
            error = max_abs_diff(received, expected)
            assert error <= 1e-5, f"peer {peer} round {index + 1}: max |got - mean| = {error:.3g}"

    finals = [decode_tensors(r["final"]) for r in results]
    for peer in range(1, PEERS):
        assert max_abs_diff(finals[peer], finals[0]) <= 1e-5, "peers ended with different models"
    if batches[0] % ROUND_DURATION == 0:  # training ended on a round: the model is its average
        last = decode_tensors(results[0]["rounds"][-1]["received"])
        assert max_abs_diff(finals[0], last) == 0.0
