"""A whole secure-aggregation round between the pure coordinator and participants (no network).

Dropouts are simulated by members that stop answering at a given step; the coordinator's stage
is then closed as its deadline would close it.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import pytest
from scipy import stats

from disco.aggregation import masking
from disco.secagg import Coordinator, Curve, Participant, RoundAborted, SecAggError, Stage

LENGTH = 50


def vectors(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"c{i}": rng.normal(0, 3, LENGTH) for i in range(n)}


def run_round(
    values: dict[str, np.ndarray],
    *,
    drop_after_keys: Collection[str] = (),
    drop_after_shares: Collection[str] = (),
    drop_after_masked: Collection[str] = (),
    curves: dict[str, tuple[Curve, ...]] | None = None,
    degree: int | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Run one round; returns (the unmasked sum, the members whose vectors it contains)."""
    coordinator = Coordinator(LENGTH, min_members=2, degree=degree)
    members = {m: Participant((curves or {}).get(m, (Curve.X25519, Curve.P256))) for m in values}
    for m, p in members.items():
        coordinator.advertise(m, p.advertisement())
    roster = coordinator.start()
    sharing = [m for m in members if m not in drop_after_keys]
    for m in sharing:
        out = members[m].share(roster, coordinator.index_of(m))  # type: ignore[arg-type]
        coordinator.submit_shares(m, out.sealed, out.commitment)
    relay = coordinator.close_sharing()
    sharers = coordinator.sharers()
    masking_members = [m for m in sharing if m not in drop_after_shares]
    for m in masking_members:
        p = members[m]
        assert p.receive(relay[p.index], sharers) == []
        coordinator.submit_masked(m, members[m].masked(values[m]).tobytes())
    survivors, dropped = coordinator.close_masking()
    for m in masking_members:
        if m in drop_after_masked:
            continue
        coordinator.submit_reveal(m, members[m].reveal(survivors, dropped))
    assert coordinator.complete() == (not drop_after_masked)
    total = coordinator.close_unmasking()
    assert coordinator.stage is Stage.DONE
    return total, sorted(coordinator.member(i) for i in survivors)


def test_unmasked_sum_equals_the_plain_sum_for_five() -> None:
    values = vectors(5)
    total, included = run_round(values)
    assert included == sorted(values)
    expected = np.sum(list(values.values()), axis=0)
    atol = 5 * 2.0 ** -(masking.DEFAULT_FRACTIONAL_BITS + 1)
    np.testing.assert_allclose(total, expected, rtol=0, atol=atol)


@pytest.mark.parametrize("dropouts", [1, 2])
@pytest.mark.parametrize("step", ["keys", "shares", "masked"])
def test_dropouts_at_each_step_still_give_the_survivors_sum(step: str, dropouts: int) -> None:
    """keys: advertised keys, never shared; shares: shared, never sent a masked update;
    masked: sent its masked update, then never revealed its shares (gone during unmasking)."""
    values = vectors(7, seed=dropouts)
    gone = [f"c{i}" for i in range(dropouts)]
    total, included = run_round(
        values,
        drop_after_keys=gone if step == "keys" else (),
        drop_after_shares=gone if step == "shares" else (),
        drop_after_masked=gone if step == "masked" else (),
    )
    counted = sorted(values) if step == "masked" else [m for m in values if m not in gone]
    assert included == sorted(counted)
    expected = np.sum([values[m] for m in counted], axis=0)
    np.testing.assert_allclose(total, expected, atol=1e-5)


def test_fewer_than_threshold_survivors_abort_with_a_reason() -> None:
    values = vectors(6)
    with pytest.raises(RoundAborted, match="fewer than the threshold 4"):
        run_round(values, drop_after_shares=["c0", "c1", "c2"])


def test_too_few_revealers_abort() -> None:
    values = vectors(6)
    with pytest.raises(RoundAborted, match="fewer than the threshold"):
        run_round(values, drop_after_masked=["c0", "c1", "c2"])


def test_a_round_mixing_curves_uses_the_common_one() -> None:
    values = vectors(4)
    curves = {"c0": (Curve.P256,), "c1": (Curve.X25519, Curve.P256)}
    total, included = run_round(values, curves=curves)
    assert len(included) == 4
    np.testing.assert_allclose(total, np.sum(list(values.values()), axis=0), atol=1e-5)


def test_sparse_graph_with_a_dropout() -> None:
    values = vectors(9, seed=3)
    total, included = run_round(values, degree=4, drop_after_shares=["c4"])
    expected = np.sum([v for m, v in values.items() if m != "c4"], axis=0)
    assert "c4" not in included
    np.testing.assert_allclose(total, expected, atol=1e-5)


def _started(n: int) -> tuple[Coordinator, dict[str, Participant]]:
    coordinator = Coordinator(LENGTH)
    members = {f"c{i}": Participant() for i in range(n)}
    for m, p in members.items():
        coordinator.advertise(m, p.advertisement())
    coordinator.start()
    return coordinator, members


def _shared(n: int) -> tuple[Coordinator, dict[str, Participant], dict[int, dict[int, bytes]]]:
    """A round of n members whose shares were all relayed: (coordinator, members, relay)."""
    coordinator, members = _started(n)
    for m, p in members.items():
        out = p.share(coordinator.roster, coordinator.index_of(m))  # type: ignore[arg-type]
        coordinator.submit_shares(m, out.sealed, out.commitment)
    relay = coordinator.close_sharing()
    return coordinator, members, relay


def test_malformed_shares_and_wrong_length_masks_are_refused_without_breaking_the_round() -> None:
    values = vectors(5, seed=4)
    coordinator, members = _started(5)
    roster = coordinator.roster
    for m, p in members.items():
        out = p.share(roster, coordinator.index_of(m))  # type: ignore[arg-type]
        if m == "c0":
            bad = dict(out.sealed)
            first = next(iter(bad))
            bad[first] = bad[first][:-1]
            with pytest.raises(SecAggError, match="bytes"):
                coordinator.submit_shares(m, bad, out.commitment)
            with pytest.raises(SecAggError, match="neighbours"):
                coordinator.submit_shares(m, {99: out.sealed[first]}, out.commitment)
        coordinator.submit_shares(m, out.sealed, out.commitment)
    relay = coordinator.close_sharing()
    for m, p in members.items():
        p.receive(relay[p.index], coordinator.sharers())
        masked = p.masked(values[m]).tobytes()
        if m == "c1":
            with pytest.raises(SecAggError, match="must be"):
                coordinator.submit_masked(m, masked[:-8])
            continue  # c1 never manages a valid masked update: it is treated as dropped
        coordinator.submit_masked(m, masked)
    survivors, dropped = coordinator.close_masking()
    assert [coordinator.member(d) for d in dropped] == ["c1"]
    for m, p in members.items():
        if m == "c1":
            continue
        shares = p.reveal(survivors, dropped)
        if m == "c2":
            broken = {j: b"\x00" * 10 for j in shares}
            with pytest.raises(SecAggError, match="66 bytes"):
                coordinator.submit_reveal(m, broken)
        coordinator.submit_reveal(m, shares)
    total = coordinator.close_unmasking()
    expected = np.sum([v for m, v in values.items() if m != "c1"], axis=0)
    np.testing.assert_allclose(total, expected, atol=1e-5)


def test_a_wrong_but_well_formed_share_is_outvoted() -> None:
    values = vectors(5, seed=5)
    coordinator, members, relay = _shared(5)
    for m, p in members.items():
        p.receive(relay[p.index], coordinator.sharers())
        coordinator.submit_masked(m, p.masked(values[m]))
    survivors, dropped = coordinator.close_masking()
    for m, p in members.items():
        shares = p.reveal(survivors, dropped)
        if m == "c3":  # a lying survivor: every share it reveals is random
            shares = {
                j: (int.from_bytes(s, "big") ^ 1).to_bytes(66, "big") for j, s in shares.items()
            }
        coordinator.submit_reveal(m, shares)
    total = coordinator.close_unmasking()
    np.testing.assert_allclose(total, np.sum(list(values.values()), axis=0), atol=1e-5)


def test_participant_refuses_to_reveal_both_seeds_of_someone() -> None:
    coordinator, members, relay = _shared(4)
    p = members["c0"]
    p.receive(relay[p.index], coordinator.sharers())
    p.masked(np.zeros(LENGTH))
    other = next(i for i in coordinator.sharers() if i != p.index)
    with pytest.raises(SecAggError, match="both"):
        p.reveal([p.index, other, *coordinator.sharers()], [other])


def test_tampered_relayed_share_is_ignored_by_its_recipient() -> None:
    coordinator, members, relay = _shared(3)
    p = members["c0"]
    boxes = dict(relay[p.index])
    sender = next(iter(boxes))
    boxes[sender] = boxes[sender][:-1] + bytes([boxes[sender][-1] ^ 1])
    assert p.receive(boxes, coordinator.sharers()) == [sender]


@pytest.mark.slow
def test_a_masked_update_is_uniform_modulo_2_64() -> None:
    """The server's view of one member: chi-square on the top byte and on the low byte of each
    word, and a Kolmogorov-Smirnov test of the words / 2^64, for a constant (all-zero) input."""
    coordinator, members = _started(3)
    length = 20_000
    coordinator.vector_length = length
    roster = coordinator.roster
    object.__setattr__(roster, "vector_length", length)
    for m, p in members.items():
        out = p.share(roster, coordinator.index_of(m))  # type: ignore[arg-type]
        coordinator.submit_shares(m, out.sealed, out.commitment)
    relay = coordinator.close_sharing()
    p = members["c0"]
    p.receive(relay[p.index], coordinator.sharers())
    words = p.masked(np.zeros(length))
    for byte in (words >> np.uint64(56), words & np.uint64(0xFF)):
        counts = np.bincount(byte.astype(np.int64), minlength=256)
        assert stats.chisquare(counts).pvalue > 1e-4
    uniform = words.astype(np.float64) / 2.0**64
    assert stats.kstest(uniform, "uniform").pvalue > 1e-4
