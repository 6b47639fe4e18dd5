"""Compressed updates: fp16 / int8 deltas round-trip, their size, error feedback, refusals, and a
round of two int8 Python clients over a loopback server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest

from disco.client.federated import FederatedSession
from disco.protocol.compression import ErrorFeedback, decode_delta, encode_delta
from disco.protocol.errors import ProtocolError
from disco.protocol.framing import pack
from disco.protocol.messages import post_weights
from support.robust_ws import push_task
from support.servers import loopback_server

SHAPES = [(100, 100), (37,)]


def delta(seed: int, scale: float = 0.01) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(scale * rng.standard_normal(shape)).astype(np.float32) for shape in SHAPES]


@pytest.mark.parametrize("kind, bound", [("fp16", 2.0**-11), ("int8", 0.5 / 127)])
def test_round_trip_and_error_bound(kind: str, bound: float) -> None:
    original = delta(0)
    fields, sent = encode_delta(original, kind)  # type: ignore[arg-type]
    decoded = decode_delta(fields)
    for got, expected, exact in zip(decoded, sent, original, strict=True):
        assert got.dtype == np.float32 and got.shape == exact.shape
        np.testing.assert_array_equal(got, expected)  # what the client books as sent
        # fp16: half an ulp (2**-11 relative); int8: half a step of its block scale (max / 127)
        assert float(np.abs(got - exact).max()) <= bound * float(np.abs(exact).max()) + 1e-12


def test_int8_costs_at_most_1_1_bytes_per_parameter() -> None:
    original = delta(1)
    size = sum(int(np.prod(s)) for s in SHAPES)
    fields, _ = encode_delta(original, "int8")
    frame = pack(post_weights(fields, 12345, 60000))
    assert len(frame) / size <= 1.1
    half, _ = encode_delta(original, "fp16")
    assert len(pack(post_weights(half, 1))) / size <= 2.05


def test_error_feedback_keeps_the_sent_sum_close_to_the_true_sum() -> None:
    """A constant small step, below int8's resolution next to one big value per block: without
    feedback it is lost every round; with it, the sum sent tracks the true sum within one step."""
    step = [np.full((64,), 1e-3, np.float32)]
    step[0][0] = 1.0  # sets the block's scale: 1e-3 rounds to 0
    feedback = ErrorFeedback("int8")
    base = [np.zeros(64, np.float32)]
    sent_total = np.zeros(64, np.float32)
    for _ in range(50):
        fields, residual = feedback.encode([base[0] + step[0]], base)
        feedback.accepted(residual)
        sent_total += decode_delta(fields)[0]
    true_total = 50 * step[0]
    assert float(np.abs(sent_total - true_total).max()) <= 1.0 / 127  # one quantization step
    plain_total = 50 * decode_delta(encode_delta(step, "int8")[0])[0]
    assert float(np.abs(plain_total - true_total)[1:].max()) == pytest.approx(0.05, rel=1e-3)


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"data": b"\x00" * 3}, "values and"),
        ({"scales": b"\x00\x00\xc0\x7f" * 157}, "NaN or Inf"),
        ({"block": 0}, "'block' must be"),
        ({"encoding": "q4-delta"}, "unsupported"),
        ({"shapes": [[-1]]}, "must hold integers"),
    ],
)
def test_malformed_deltas_are_refused(change: dict[str, object], reason: str) -> None:
    fields, _ = encode_delta(delta(2), "int8")
    with pytest.raises(ProtocolError, match=reason):
        decode_delta({**fields, **change})


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with loopback_server(tmp_path_factory) as url:
        yield url


async def test_two_int8_clients_complete_rounds(server_url: str) -> None:
    task = await push_task(server_url, minNbOfParticipants=2)
    async with (
        FederatedSession(server_url, task, compression="int8") as first,
        FederatedSession(server_url, task, compression="int8") as second,
    ):
        _, start = await first.latest()
        await second.latest()
        one = [w + np.float32(0.25) for w in start]
        two = [w - np.float32(0.05) for w in start]
        exchanges = await asyncio.gather(
            first.contribute(one, 0, 10, timeout_s=20), second.contribute(two, 0, 10, timeout_s=20)
        )
    assert first._feedback is not None and first._feedback.residual is not None  # int8 was sent
    for exchange in exchanges:
        assert exchange.round == 1 and exchange.weights is not None
        for new, old in zip(exchange.weights, start, strict=True):
            np.testing.assert_allclose(new, old + 0.1, atol=0.25 / 127 + 1e-6)
