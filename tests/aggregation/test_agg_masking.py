"""Fixed-point vectors mod 2^64, AES-CTR masks and Shamir sharing of secure aggregation."""

import secrets

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from disco.aggregation import masking, shamir
from disco.aggregation.errors import AggregationError

# --- fixed point -------------------------------------------------------------------------


def test_sum_of_encodings_decodes_to_the_sum_within_rounding() -> None:
    rng = np.random.default_rng(0)
    vectors = [rng.normal(0, 50, 1000) for _ in range(7)]
    total = np.zeros(1000, dtype=np.uint64)
    for v in vectors:
        masking.add_into(total, masking.encode(v, summands=7))
    bound = 7 * 2.0 ** -(masking.DEFAULT_FRACTIONAL_BITS + 1)
    np.testing.assert_allclose(masking.decode(total), np.sum(vectors, axis=0), rtol=0, atol=bound)


def test_encode_refuses_values_whose_sum_could_overflow() -> None:
    limit = masking.encoding_limit(24, 10)
    masking.encode(np.array([limit * 0.99, -limit * 0.99]), 24, summands=10)
    with pytest.raises(AggregationError, match="do not fit"):
        masking.encode(np.array([limit * 1.01]), 24, summands=10)
    with pytest.raises(AggregationError, match="NaN"):
        masking.encode(np.array([np.nan]))


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=50))
@settings(max_examples=50, deadline=None)
def test_encode_decode_round_trip(values: list[float]) -> None:
    array = np.array(values)
    decoded = masking.decode(masking.encode(array))
    assert np.abs(decoded - array).max() <= 2.0 ** -(masking.DEFAULT_FRACTIONAL_BITS + 1)


# --- masks -------------------------------------------------------------------------------


def test_expand_is_deterministic_per_seed_and_differs_between_seeds() -> None:
    seed = bytes(range(32))
    a, b = masking.expand(seed, 100), masking.expand(seed, 100)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, masking.expand(bytes(32), 100))
    np.testing.assert_array_equal(masking.expand(seed, 10), a[:10])  # a prefix of the stream
    with pytest.raises(AggregationError, match="32 bytes"):
        masking.expand(b"short", 4)


def test_pairwise_masks_cancel_and_self_masks_are_removed() -> None:
    rng = np.random.default_rng(1)
    n, length = 4, 257
    pair = {(i, j): secrets.token_bytes(32) for i in range(1, n + 1) for j in range(i + 1, n + 1)}
    own = {i: secrets.token_bytes(32) for i in range(1, n + 1)}
    values = {i: rng.normal(size=length) for i in range(1, n + 1)}
    total = np.zeros(length, dtype=np.uint64)
    for i in range(1, n + 1):
        seeds = {j: pair[(min(i, j), max(i, j))] for j in range(1, n + 1) if j != i}
        masking.add_into(
            total, masking.mask(masking.encode(values[i], summands=n), own[i], seeds, i)
        )
    unmasked = masking.unmask(total, own.values(), [])
    np.testing.assert_allclose(masking.decode(unmasked), sum(values.values()), atol=1e-6)


def test_unmask_removes_the_masks_towards_a_dropped_participant() -> None:
    rng = np.random.default_rng(2)
    length = 64
    s12, s13, s23 = (secrets.token_bytes(32) for _ in range(3))
    own = {i: secrets.token_bytes(32) for i in (1, 2, 3)}
    x1, x3 = rng.normal(size=length), rng.normal(size=length)
    # 2 dropped after the others fixed their masks with it
    y1 = masking.mask(masking.encode(x1), own[1], {2: s12, 3: s13}, 1)
    y3 = masking.mask(masking.encode(x3), own[3], {1: s13, 2: s23}, 3)
    total = np.zeros(length, dtype=np.uint64)
    masking.add_into(total, y1)
    masking.add_into(total, y3)
    unmasked = masking.unmask(total, [own[1], own[3]], [(1, 2, s12), (3, 2, s23)])
    np.testing.assert_allclose(masking.decode(unmasked), x1 + x3, atol=1e-6)


def test_add_into_refuses_a_vector_of_the_wrong_length() -> None:
    total = np.zeros(4, dtype=np.uint64)
    with pytest.raises(AggregationError, match="shape"):
        masking.add_into(total, np.zeros(5, dtype=np.uint64))


# --- Shamir ------------------------------------------------------------------------------


def test_any_threshold_shares_rebuild_the_secret() -> None:
    secret = int.from_bytes(secrets.token_bytes(32), "big")
    shares = shamir.split(secret, range(1, 8), threshold=5)
    points = list(shares)
    for start in range(3):
        subset = {x: shares[x] for x in points[start : start + 5]}
        assert shamir.combine(subset) == secret
    assert shamir.combine(shares) == secret  # more than the threshold is fine too


def test_fewer_than_threshold_shares_give_an_unrelated_value() -> None:
    secret = 12345
    shares = shamir.split(secret, range(1, 6), threshold=3)
    assert shamir.combine({1: shares[1], 2: shares[2]}) != secret


def test_share_bytes_round_trip_and_refusals() -> None:
    value = shamir.PRIME - 1
    assert shamir.share_from_bytes(shamir.share_to_bytes(value)) == value
    with pytest.raises(AggregationError, match="66 bytes"):
        shamir.share_from_bytes(b"\x00" * 65)
    with pytest.raises(AggregationError, match="field element"):
        shamir.share_from_bytes(b"\xff" * 66)
    with pytest.raises(AggregationError, match="threshold"):
        shamir.split(1, [1, 2], threshold=3)
    with pytest.raises(AggregationError, match="distinct"):
        shamir.split(1, [1, 1], threshold=1)
