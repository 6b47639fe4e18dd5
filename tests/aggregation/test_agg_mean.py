"""FedAvg: known answers, validation, numerical behaviour and speed."""


import numpy as np
import pytest

from disco.aggregation import AggregationError, mean
from disco.aggregation.mean import BLOCK, GROUP


def f32(values: object) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def test_unweighted_mean_known_answer() -> None:
    a = [f32([[1, 2], [3, 4]]), f32([10])]
    b = [f32([[3, 6], [5, 0]]), f32([20])]
    out = mean([a, b])
    assert [t.shape for t in out] == [(2, 2), (1,)]
    assert all(t.dtype == np.float32 for t in out)
    np.testing.assert_array_equal(out[0], [[2, 4], [4, 2]])
    np.testing.assert_array_equal(out[1], [15])


def test_weighted_mean_known_answer() -> None:
    a = [f32([0, 4])]
    b = [f32([4, 8])]
    # (0*1 + 4*3) / 4 = 3 and (4*1 + 8*3) / 4 = 7
    np.testing.assert_array_equal(mean([a, b], [1, 3])[0], [3, 7])
    np.testing.assert_array_equal(mean([a, b], [2.5, 2.5])[0], [2, 6])


def test_single_update_is_returned_as_a_new_array() -> None:
    update = [f32([1.5, -2.25])]
    out = mean([update])
    np.testing.assert_array_equal(out[0], update[0])
    assert not np.shares_memory(out[0], update[0])


def test_inputs_are_not_modified_and_read_only_inputs_work() -> None:
    data = np.array([1, 2, 3, 4], dtype=np.float32).tobytes()
    ro = np.frombuffer(data, dtype=np.float32)
    other = [f32([3, 2, 1, 0])]
    out = mean([[ro], other], [1, 1])
    np.testing.assert_array_equal(out[0], [2, 2, 2, 2])
    np.testing.assert_array_equal(ro, [1, 2, 3, 4])


def test_many_clients_and_blocks_match_a_float64_reference() -> None:
    rng = np.random.default_rng(0)
    n = 2 * GROUP + 3  # groups of unequal size
    size = BLOCK + 1234  # more than one block, ragged last block
    updates = [[rng.standard_normal(size, dtype=np.float32).reshape(-1, 2)] for _ in range(n)]
    counts = rng.uniform(1, 1000, n)
    stacked = np.stack([u[0] for u in updates]).astype(np.float64)
    expected = np.tensordot(counts / counts.sum(), stacked, axes=1)
    got = mean(updates, list(counts))[0]
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6)
    got_plain = mean(updates)[0]
    np.testing.assert_allclose(got_plain, stacked.mean(axis=0), rtol=0, atol=2e-6)


def test_values_near_float32_max_do_not_overflow() -> None:
    big = np.float32(3e38)
    updates = [[np.full(4, big, dtype=np.float32)] for _ in range(GROUP + 1)]
    out = mean(updates)[0]
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, 3e38, rtol=1e-6)
    out_weighted = mean(updates, [1.0] * len(updates))[0]
    np.testing.assert_allclose(out_weighted, 3e38, rtol=1e-6)


def test_huge_sample_counts_are_normalised_without_overflow() -> None:
    a, b = [f32([0])], [f32([4])]
    np.testing.assert_allclose(mean([a, b], [0.5e308, 1.5e308])[0], [3])


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ([1], "got 1 sample counts for 2 updates"),
        ([1, 0], "sample count 1 must be positive"),
        ([-1, 1], "sample count 0 must be positive"),
        ([1, float("nan")], "sample count 1 must be positive and finite"),
        ([1, float("inf")], "sample count 1 must be positive and finite"),
        ([True, 1], "sample count 0 is not a number"),
        (["3", 1], "sample count 0 is not a number"),
    ],
)
def test_bad_sample_counts_are_rejected(counts: list[object], message: str) -> None:
    update = [f32([1])]
    with pytest.raises(AggregationError, match=message):
        mean([update, update], counts)  # type: ignore[arg-type]


def test_structure_errors() -> None:
    with pytest.raises(AggregationError, match="no updates"):
        mean([])
    with pytest.raises(AggregationError, match=r"update 1, tensor 0: shape \[3\]"):
        mean([[f32([1, 2])], [f32([1, 2, 3])]])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_is_rejected_naming_update_and_tensor(bad: float) -> None:
    good = [f32([1, 2]), f32([3])]
    poisoned = [f32([1, 2]), f32([bad])]
    with pytest.raises(AggregationError, match="update 2, tensor 1: contains non-finite"):
        mean([good, good, poisoned])


def test_mixed_layouts_and_many_small_tensors_match_a_float64_reference() -> None:
    rng = np.random.default_rng(5)
    shapes = [(3,), (40_000,), (7, 5), (1,), (300, 300), (2,)]
    flat_size = sum(int(np.prod(s)) for s in shapes)
    updates = []
    for i in range(11):
        values = rng.standard_normal(flat_size, dtype=np.float32)
        offsets = np.cumsum([0] + [int(np.prod(s)) for s in shapes])
        bounds = list(zip(offsets[:-1], offsets[1:], shapes, strict=True))
        if i % 2:  # views into one read-only buffer, as decoded from the wire
            buffer = np.frombuffer(values.tobytes(), dtype=np.float32)
            updates.append([buffer[a:b].reshape(s) for a, b, s in bounds])
        else:  # separate tensors, some float64
            updates.append(
                [
                    values[a:b].reshape(s).astype(np.float64 if j == 1 else np.float32)
                    for j, (a, b, s) in enumerate(bounds)
                ]
            )
    counts = list(rng.uniform(1, 10, len(updates)))
    weights = np.array(counts) / sum(counts)
    got = mean(updates, counts)
    assert [t.shape for t in got] == shapes
    for j, tensor in enumerate(got):
        stacked = np.stack([u[j] for u in updates]).astype(np.float64)
        np.testing.assert_allclose(tensor, np.tensordot(weights, stacked, axes=1), atol=2e-6)


def test_models_with_empty_tensors() -> None:
    a = [np.zeros((0, 3), dtype=np.float32), f32([1, 2])]
    b = [np.zeros((0, 3), dtype=np.float32), f32([3, 4])]
    out = mean([a, b], [1, 1])
    assert out[0].shape == (0, 3)
    np.testing.assert_array_equal(out[1], [2, 3])
    assert mean([[], []]) == []
