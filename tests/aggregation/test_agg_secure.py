"""Secret-sharing arithmetic: DISCO-style real shares and fixed-point shares mod 2^32."""

import numpy as np
import pytest

from disco.aggregation import (
    AggregationError,
    fixed_point_limit,
    from_fixed_point,
    make_masked_shares,
    make_shares,
    mean_from_fixed_point_sum,
    sum_masked_shares,
    sum_shares,
    to_fixed_point,
)

# --- DISCO-compatible real shares --------------------------------------------------------


def test_real_shares_sum_back_to_the_secret() -> None:
    rng = np.random.default_rng(0)
    secret = rng.standard_normal((3, 4)).astype(np.float32)
    shares = make_shares(secret, 5, 100.0, rng)
    assert len(shares) == 5
    assert all(s.shape == (3, 4) and s.dtype == np.float64 for s in shares)
    for share in shares[:-1]:
        assert np.abs(share).max() < 100.0
    total = sum_shares(shares)
    np.testing.assert_allclose(total, secret, rtol=1e-9, atol=1e-9 * 100.0)


def test_one_real_share_is_the_secret_itself() -> None:
    secret = np.array([1.5, -2.0])
    (share,) = make_shares(secret, 1)
    np.testing.assert_array_equal(share, secret)


def test_real_shares_default_rng_is_fresh_each_time() -> None:
    secret = np.zeros(8)
    first = make_shares(secret, 2)
    second = make_shares(secret, 2)
    assert not np.array_equal(first[0], second[0])
    np.testing.assert_allclose(sum_shares(first), secret, atol=1e-12)


def test_real_partial_sums_give_the_mean_of_the_peers() -> None:
    rng = np.random.default_rng(1)
    secrets_ = [rng.uniform(-1, 1, 6) for _ in range(4)]
    all_shares = [make_shares(s, 4, 100.0, rng) for s in secrets_]
    partials = [sum_shares([shares[peer] for shares in all_shares]) for peer in range(4)]
    np.testing.assert_allclose(
        sum_shares(partials) / 4, np.mean(secrets_, axis=0), rtol=1e-9, atol=1e-9 * 100.0
    )


@pytest.mark.parametrize(
    ("n", "bound", "secret", "message"),
    [
        (0, 100.0, [1.0], "number of shares"),
        (2, 0.0, [1.0], "max_share_value must be positive"),
        (2, float("inf"), [1.0], "max_share_value must be positive and finite"),
        (2, 100.0, [np.nan], "non-finite"),
    ],
)
def test_real_share_validation(n: int, bound: float, secret: list[float], message: str) -> None:
    with pytest.raises(AggregationError, match=message):
        make_shares(np.array(secret), n, bound)


def test_sum_shares_validation() -> None:
    with pytest.raises(AggregationError, match="no share"):
        sum_shares([])
    with pytest.raises(AggregationError, match=r"share 1 has shape \[3\], expected \[2\]"):
        sum_shares([np.zeros(2), np.zeros(3)])
    with pytest.raises(AggregationError, match="non-finite"):
        sum_shares([np.zeros(2), np.array([np.inf, 0])])


# --- fixed point ---------------------------------------------------------------------------


def test_fixed_point_known_encodings() -> None:
    encoded = to_fixed_point(np.array([0.0, 1.0, -1.0, 0.5, -(2**-16)]), scale_bits=16)
    assert encoded.dtype == np.uint32
    assert encoded.tolist() == [0, 65536, 2**32 - 65536, 32768, 2**32 - 1]
    np.testing.assert_array_equal(from_fixed_point(encoded), [0.0, 1.0, -1.0, 0.5, -(2**-16)])


def test_fixed_point_precision_bound() -> None:
    """Rounding to the nearest multiple of 2^-s: error <= 2^-(s+1), for every scale."""
    rng = np.random.default_rng(2)
    for bits in (0, 8, 16, 24):
        limit = fixed_point_limit(bits)
        values = rng.uniform(-limit, limit, 10_000)
        error = np.abs(from_fixed_point(to_fixed_point(values, bits), bits) - values)
        assert error.max() <= 2.0 ** -(bits + 1)
        assert error.max() > 2.0 ** -(bits + 1) * 0.9  # the bound is tight, not loose


def test_fixed_point_overflow_check_accounts_for_the_number_of_peers() -> None:
    limit = fixed_point_limit(16, 10)
    assert limit == pytest.approx((2**31 - 1) // 10 / 65536)
    to_fixed_point(np.array([limit, -limit]), 16, n_summands=10)
    with pytest.raises(AggregationError, match=r"10 summands \|x\| must stay <= 3276"):
        to_fixed_point(np.array([0.0, limit + 2**-15]), 16, n_summands=10)
    to_fixed_point(np.array([limit + 2**-15]), 16, n_summands=9)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"x": np.array([np.nan])}, "non-finite"),
        ({"x": np.array([1.0]), "scale_bits": 31}, "scale_bits must be in"),
        ({"x": np.array([1.0]), "scale_bits": 1.5}, "scale_bits must be an integer"),
        ({"x": np.array([1.0]), "n_summands": 0}, "n_summands must be a positive integer"),
    ],
)
def test_fixed_point_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(AggregationError, match=message):
        to_fixed_point(**kwargs)  # type: ignore[arg-type]


def test_from_fixed_point_wants_uint32() -> None:
    with pytest.raises(AggregationError, match="uint32"):
        from_fixed_point(np.array([1], dtype=np.int64))


# --- masked shares -------------------------------------------------------------------------


def test_masked_shares_sum_back_exactly() -> None:
    rng = np.random.default_rng(3)
    secret = to_fixed_point(rng.uniform(-100, 100, (5, 7)))
    shares = make_masked_shares(secret, 6, rng.bytes)
    assert len(shares) == 6 and all(s.dtype == np.uint32 and s.shape == (5, 7) for s in shares)
    np.testing.assert_array_equal(sum_masked_shares(shares), secret)
    # the default CSPRNG source works the same way and gives fresh masks
    first = make_masked_shares(secret, 3)
    np.testing.assert_array_equal(sum_masked_shares(first), secret)
    assert not np.array_equal(first[0], make_masked_shares(secret, 3)[0])


def test_masked_secure_aggregation_decodes_the_mean_within_the_rounding_bound() -> None:
    rng = np.random.default_rng(4)
    peers = 5
    limit = fixed_point_limit(16, peers)
    updates = [rng.uniform(-limit, limit, 1000) for _ in range(peers)]
    updates[0][:3] = [limit, -limit, 0.0]  # wrap-around at the edges of the range
    updates[1][:3] = [limit, -limit, -limit]
    encoded = [to_fixed_point(u, 16, n_summands=peers) for u in updates]
    all_shares = [make_masked_shares(e, peers, rng.bytes) for e in encoded]
    partials = [sum_masked_shares([s[peer] for s in all_shares]) for peer in range(peers)]
    total = sum_masked_shares(partials)
    np.testing.assert_array_equal(total, sum_masked_shares(encoded))  # exact
    decoded = mean_from_fixed_point_sum(total, peers, 16)
    error = np.abs(decoded - np.mean(updates, axis=0))
    assert error.max() <= 2.0**-17


def _chi_square_top_bits(values: np.ndarray, bits: int = 4) -> float:
    counts = np.bincount((values >> np.uint32(32 - bits)).astype(np.int64), minlength=2**bits)
    expected = values.size / 2**bits
    return float(((counts - expected) ** 2 / expected).sum())


def test_each_masked_share_alone_looks_uniform() -> None:
    rng = np.random.default_rng(5)
    secret = to_fixed_point(np.full(16_000, 0.25))  # a constant secret: maximally non-uniform
    assert _chi_square_top_bits(secret) > 1e5  # the check does notice a non-uniform array
    shares = make_masked_shares(secret, 3, rng.bytes)
    # 15 degrees of freedom: P(chi2 > 45) ~ 1e-4 for uniform data
    for share in shares:
        assert _chi_square_top_bits(share) < 45
        assert _chi_square_top_bits(share << np.uint32(28)) < 45  # low bits too
        assert abs(float(share.mean()) / 2**32 - 0.5) < 0.01


def test_masked_share_validation() -> None:
    secret = to_fixed_point(np.zeros(4))
    with pytest.raises(AggregationError, match="returned 3 bytes, wanted 16"):
        make_masked_shares(secret, 2, lambda k: b"abc")
    with pytest.raises(AggregationError, match="must be uint32"):
        make_masked_shares(np.zeros(4, dtype=np.int32), 2)
    with pytest.raises(AggregationError, match="number of shares"):
        make_masked_shares(secret, 0)
    with pytest.raises(AggregationError, match="share 1 must be uint32"):
        sum_masked_shares([secret, np.zeros(4, dtype=np.int64)])
    with pytest.raises(AggregationError, match="no share"):
        sum_masked_shares([])
