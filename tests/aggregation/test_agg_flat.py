"""Structure checks of updates and their cut into pieces (flatten itself: tests/test_weights.py)."""

import numpy as np
import pytest

from disco.aggregation import AggregationError, aggregation_bytes, check_updates
from disco.aggregation.flat import RUN_ELEMENTS, SMALL_TENSOR, pieces_of


def f32(values: object) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def test_check_updates_names_the_offending_tensor() -> None:
    good = [f32([1, 2]), f32([[1], [2]])]
    assert check_updates([good, good]) == [(2,), (2, 1)]
    with pytest.raises(AggregationError, match="no updates"):
        check_updates([])
    with pytest.raises(AggregationError, match="update 1 has 1 tensors, expected 2"):
        check_updates([good, good[:1]])
    with pytest.raises(AggregationError, match=r"update 2, tensor 1: shape \[1, 2\]"):
        check_updates([good, good, [good[0], f32([[1, 2]])]])
    with pytest.raises(AggregationError, match="update 0, tensor 0: expected floating"):
        check_updates([[np.array([1, 2])]])
    with pytest.raises(AggregationError, match="expected a numpy array, got list"):
        check_updates([[[1.0, 2.0]]])  # type: ignore[list-item]
    with pytest.raises(AggregationError, match=r"update 0, tensor 0: shape \[2\] does not"):
        check_updates([good], reference=[(3,), (2, 1)])


def test_aggregation_bytes_counts_every_tensor() -> None:
    update = [f32([1, 2, 3]), f32([[1, 2]])]
    assert aggregation_bytes([update, update]) == 2 * 5 * 4


def test_pieces_merge_small_tensors_and_keep_big_ones_as_views() -> None:
    big = RUN_ELEMENTS + 5
    shapes = [(3,), (big,), (2, 2), (1,), (RUN_ELEMENTS - 4,)]
    separate = [np.full(s, j, dtype=np.float32) for j, s in enumerate(shapes)]
    pieces = pieces_of([separate], shapes)
    # runs: [t0] alone (t1 would overflow it), [t1] alone, [t2, t3], then t4 does not fit
    assert [p.size for p in pieces.pieces[0]] == [3, big, 5, RUN_ELEMENTS - 4]
    assert pieces.offsets == [0, 3, 3 + big, 8 + big]
    assert pieces.size == sum(int(np.prod(s)) for s in shapes)
    assert np.shares_memory(pieces.pieces[0][1], separate[1])  # big tensor: no copy
    np.testing.assert_array_equal(pieces.pieces[0][2], [2, 2, 2, 2, 3])


def test_small_tensors_merge_up_to_the_run_size() -> None:
    shapes = [(SMALL_TENSOR - 1,)] * 20 + [(SMALL_TENSOR,)] + [(1,)] * 3
    per_run = RUN_ELEMENTS // (SMALL_TENSOR - 1)
    pieces = pieces_of([[np.zeros(s, dtype=np.float32) for s in shapes]], shapes)
    sizes = [p.size for p in pieces.pieces[0]]
    assert sizes[0] == per_run * (SMALL_TENSOR - 1)
    assert sum(sizes[:-2]) == 20 * (SMALL_TENSOR - 1)
    assert sizes[-2:] == [SMALL_TENSOR, 3]


def test_pieces_align_across_differently_laid_out_updates() -> None:
    shapes = [(2, 3), (4,)]
    buffer = np.frombuffer(np.arange(10, dtype=np.float32).tobytes(), dtype=np.float32)
    one_buffer = [buffer[:6].reshape(2, 3), buffer[6:]]
    separate = [np.arange(6, dtype=np.float32).reshape(2, 3), np.arange(6, 10, dtype=np.float32)]
    halves = (np.arange(12, dtype=np.float32) / 2).reshape(2, 6)
    non_contiguous: list[np.ndarray] = [
        halves[:, ::2],
        separate[1],
    ]  # strided [[0, 1, 2], [3, 4, 5]]
    assert not non_contiguous[0].flags.c_contiguous
    pieces = pieces_of([one_buffer, separate, non_contiguous], shapes)
    assert np.shares_memory(pieces.pieces[0][0], buffer)
    for update in pieces.pieces:
        np.testing.assert_array_equal(np.concatenate(update), np.arange(10))
    assert list(pieces.blocks(4)) == [(0, 0, 4, 0), (0, 4, 8, 4), (0, 8, 10, 8)]
