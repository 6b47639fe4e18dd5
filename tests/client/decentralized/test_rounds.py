"""Round logic over in-memory peers: clear text, DISCO-compatible and native secure aggregation."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

from disco.client.decentralized.clear_text import clear_text_round
from disco.client.decentralized.rounds import RoundOutcome
from disco.client.decentralized.secure import (
    DISCO_MODE,
    NATIVE_MODE,
    choose_secure_mode,
    secure_round,
)
from disco.protocol.types import MessageType
from disco.weights import Weights

SHAPES = [(4, 3), (3,), (2, 2, 2)]
SCALE_BITS = 16
NATIVE_TOLERANCE = 2.0 ** -(SCALE_BITS + 1) + 1e-6  # rounding of the encoding + float32 output


def inputs(n: int, seed: int = 0, scale: float = 1.0) -> list[Weights]:
    rng = np.random.default_rng(seed)
    return [
        [(scale * rng.uniform(-1, 1, size=s)).astype(np.float32) for s in SHAPES] for _ in range(n)
    ]


def exact_mean(updates: Sequence[Weights]) -> list[np.ndarray[Any, Any]]:
    return [np.mean([np.float64(u[i]) for u in updates], axis=0) for i in range(len(SHAPES))]


def error(got: Weights | None, want: Sequence[np.ndarray[Any, Any]]) -> float:
    assert got is not None
    assert [t.shape for t in got] == [w.shape for w in want]
    assert all(t.dtype == np.float32 for t in got)
    return max(float(np.abs(np.float64(g) - w).max()) for g, w in zip(got, want, strict=True))


async def run_all(
    mesh: Any, updates: Sequence[Weights], round_: Callable[..., Any], skip: Sequence[int] = ()
) -> list[RoundOutcome]:
    """Every participant (but `skip`) runs `round_(own, peers, deadline)` concurrently."""
    deadline = asyncio.get_running_loop().time() + 2.0
    return list(
        await asyncio.gather(
            *(
                round_(updates[i], mesh.peers_of(i), deadline)
                for i in range(len(updates))
                if i not in skip
            )
        )
    )


# --------------------------------------------------------------------------- clear text


async def test_clear_text_every_peer_gets_the_mean(fake_mesh: Callable[..., Any]) -> None:
    updates = inputs(3)
    outcomes = await run_all(fake_mesh(3, js=[1]), updates, clear_text_round)
    for outcome in outcomes:
        assert outcome.failure is None and outcome.participants == 3
        assert error(outcome.weights, exact_mean(updates)) < 1e-6


async def test_clear_text_leaves_out_a_vanished_peer(fake_mesh: Callable[..., Any]) -> None:
    updates = inputs(3)
    mesh = fake_mesh(3, vanished=[2])
    outcomes = await run_all(mesh, updates, clear_text_round, skip=[2])
    for outcome in outcomes:
        assert outcome.participants == 2
        assert outcome.left_out == (mesh.ids[2],)
        assert error(outcome.weights, exact_mean(updates[:2])) < 1e-6


async def test_clear_text_alone_returns_own_weights() -> None:
    own = inputs(1)[0]
    outcome = await clear_text_round(own, [], asyncio.get_running_loop().time() + 1)
    assert outcome.participants == 1
    assert error(outcome.weights, own) == 0


async def test_clear_text_leaves_out_weights_of_the_wrong_shape(
    fake_mesh: Callable[..., Any],
) -> None:
    updates = inputs(3)
    updates[2] = updates[2][:2]  # one tensor missing
    mesh = fake_mesh(3)
    outcomes = await run_all(mesh, updates, clear_text_round)
    for outcome in outcomes[:2]:
        assert outcome.participants == 2 and outcome.left_out == (mesh.ids[2],)
        assert error(outcome.weights, exact_mean(updates[:2])) < 1e-6


async def test_clear_text_with_nobody_delivering_fails(fake_mesh: Callable[..., Any]) -> None:
    mesh = fake_mesh(2, vanished=[1])
    (outcome,) = await run_all(mesh, inputs(2), clear_text_round, skip=[1])
    assert outcome.weights is None and outcome.failure == "no weights arrived from any peer"


# --------------------------------------------------------------------------- mode choice


def test_native_mode_needs_every_peer_to_offer_the_same_scale(
    fake_mesh: Callable[..., Any],
) -> None:
    python_only = fake_mesh(4).peers_of(0)
    assert choose_secure_mode(python_only, "auto", SCALE_BITS) == NATIVE_MODE
    assert choose_secure_mode(python_only, "auto", 20) == DISCO_MODE
    assert choose_secure_mode(python_only, "disco", SCALE_BITS) == DISCO_MODE
    assert choose_secure_mode([], "auto", SCALE_BITS) == NATIVE_MODE
    mixed = fake_mesh(4, js=[2]).peers_of(0)
    assert choose_secure_mode(mixed, "auto", SCALE_BITS) == DISCO_MODE
    with pytest.raises(RuntimeError, match=r"peers \[33\] do not offer it"):
        choose_secure_mode(mixed, "native", SCALE_BITS)


# --------------------------------------------------------------------------- secure


def secure(**options: Any) -> Callable[..., Any]:
    async def run(own: Weights, peers: Any, deadline: float) -> RoundOutcome:
        return await secure_round(own, peers, deadline, **options)

    return run


async def test_native_secure_reproduces_the_mean(fake_mesh: Callable[..., Any]) -> None:
    updates = inputs(4, scale=5.0)
    mesh = fake_mesh(4)
    outcomes = await run_all(mesh, updates, secure(scale_bits=SCALE_BITS))
    results = [o.weights for o in outcomes]
    for outcome in outcomes:
        assert outcome.mode == NATIVE_MODE and outcome.failure is None
        assert outcome.participants == 4
        assert error(outcome.weights, exact_mean(updates)) <= NATIVE_TOLERANCE
    for other in results[1:]:  # exact modular sums: every peer ends with the same model
        assert other is not None and results[0] is not None
        for a, b in zip(other, results[0], strict=True):
            np.testing.assert_array_equal(a, b)


async def test_native_shares_reveal_nothing_alone(fake_mesh: Callable[..., Any]) -> None:
    """A share of an all-zero update is a fresh uniform mask: it differs on every coordinate."""
    mesh = fake_mesh(2)
    zeros = [[np.zeros(s, dtype=np.float32) for s in SHAPES] for _ in range(2)]
    captured: list[Any] = []
    peer = mesh.peers_of(0)[0]
    original = peer.send

    async def spy(message: bytes) -> None:
        from disco.protocol.peer_messages import decode_peer_message

        captured.append(decode_peer_message(message))
        await original(message)

    peer.send = spy  # type: ignore[method-assign,unused-ignore]
    deadline = asyncio.get_running_loop().time() + 2
    outcomes = await asyncio.gather(
        secure_round(zeros[0], [peer], deadline),
        secure_round(zeros[1], mesh.peers_of(1), deadline),
    )
    assert all(error(o.weights, zeros[0]) == 0 for o in outcomes)
    share = next(m for m in captured if m.type == MessageType.SHARES)
    assert share.payload.values.dtype == np.uint32
    assert np.count_nonzero(share.payload.values) >= share.payload.values.size - 2


async def test_disco_secure_with_a_js_peer_reproduces_the_mean(
    fake_mesh: Callable[..., Any],
) -> None:
    """Participant 0 stands for a JS SecAgg peer: it runs DISCO mode, legacy payloads to it."""
    updates = inputs(3)
    mesh = fake_mesh(3, js=[0])
    deadline = asyncio.get_running_loop().time() + 2.0
    outcomes = await asyncio.gather(
        secure_round(updates[0], mesh.peers_of(0), deadline, preference="disco"),
        *(secure_round(updates[i], mesh.peers_of(i), deadline) for i in (1, 2)),
    )
    for outcome in outcomes:
        assert outcome.mode == DISCO_MODE and outcome.failure is None
        assert error(outcome.weights, exact_mean(updates)) < 1e-3


async def test_secure_fails_cleanly_when_a_peer_vanishes(fake_mesh: Callable[..., Any]) -> None:
    mesh = fake_mesh(3, vanished=[1])
    for options in ({"preference": "auto"}, {"preference": "disco"}):
        outcomes = await run_all(mesh, inputs(3), secure(**options), skip=[1])
        for outcome in outcomes:
            assert outcome.weights is None
            assert outcome.failure is not None and "peer 22" in outcome.failure


async def test_native_secure_refuses_values_that_could_overflow(
    fake_mesh: Callable[..., Any],
) -> None:
    updates = inputs(4, scale=1.0)
    updates[3][0][0, 0] = 9000.0  # > (2^31 - 1) / 4 / 2^16 = 8191.99
    outcomes = await run_all(fake_mesh(4), updates, secure(), skip=[0, 1, 2])
    assert outcomes[0].weights is None
    assert outcomes[0].failure is not None and "do not fit" in outcomes[0].failure


async def test_native_required_but_a_js_peer_present_fails(fake_mesh: Callable[..., Any]) -> None:
    peers = fake_mesh(3, js=[2]).peers_of(0)
    outcome = await secure_round(
        inputs(1)[0], peers, asyncio.get_running_loop().time() + 1, preference="native"
    )
    assert outcome.weights is None and outcome.failure is not None
    assert "native secure aggregation required" in outcome.failure
    assert all(not p.sent for p in peers), "nothing may be sent in a mode the peers do not run"
