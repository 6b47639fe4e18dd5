"""The weights module: the checks, sizes and flat views every layer of disco shares."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from disco.weights import (
    WeightsError,
    as_float32,
    check_finite,
    check_shapes,
    first_non_finite,
    flatten,
    num_parameters,
    shapes_of,
    split_by_shapes,
    weights_nbytes,
)


def f32(values: object) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# Checks and sizes


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_check_finite_names_the_tensor(bad: float) -> None:
    weights = [np.zeros(3, np.float32), np.array([[0.0, bad]], np.float32)]
    with pytest.raises(WeightsError, match=r"^weights hold NaN or Inf \(tensor 1\)$"):
        check_finite(weights)


def test_check_finite_accepts_finite_and_empty() -> None:
    check_finite([])
    check_finite([np.zeros((0, 3), np.float32), np.float32(np.finfo(np.float32).max) * np.ones(2)])


def test_check_shapes_names_count_index_and_shapes() -> None:
    weights = [np.zeros((2, 3), np.float32), np.zeros(4, np.float32)]
    check_shapes(weights, [(2, 3), [4]])
    with pytest.raises(WeightsError, match=r"^expected 3 weight tensors, got 2$"):
        check_shapes(weights, [[2, 3], [4], [1]])
    with pytest.raises(
        WeightsError, match=r"^weight tensor 1 has shape \[4\], expected \[2, 2\]$"
    ):
        check_shapes(weights, [[2, 3], [2, 2]])
    with pytest.raises(WeightsError, match=r"tensor 0 has shape \[2, 3\], expected \[3, 2\]"):
        check_shapes(weights, [[3, 2], [4]])


def test_size_helpers() -> None:
    weights = [np.zeros((2, 3), np.float32), np.zeros((), np.float32), np.zeros(0, np.float32)]
    assert shapes_of(weights) == [(2, 3), (), (0,)]
    assert num_parameters(weights) == 7
    assert weights_nbytes(weights) == 28


def test_first_non_finite_finds_the_first_bad_tensor() -> None:
    weights = [f32([1.0]), f32([math.nan]), f32([math.inf])]
    assert first_non_finite(weights) == 1
    assert first_non_finite(weights[:1]) is None
    assert first_non_finite([]) is None


def test_as_float32_converts_without_copying_float32() -> None:
    already = f32([1.0, 2.0])
    converted = as_float32([already, np.array([3.0], np.float64)])
    assert converted[0] is already
    assert converted[1].dtype == np.float32
    np.testing.assert_array_equal(converted[1], [3.0])


# ---------------------------------------------------------------------------------------------
# Flat views


def test_flatten_is_zero_copy_for_tensors_decoded_from_one_buffer() -> None:
    data = np.arange(10, dtype=np.float32).tobytes()
    base = np.frombuffer(data, dtype=np.float32)
    weights = [base[:6].reshape(2, 3), base[6:]]
    flat = flatten(weights)
    assert np.shares_memory(flat, base)
    np.testing.assert_array_equal(flat, np.arange(10, dtype=np.float32))


def test_flatten_is_zero_copy_with_a_byte_offset() -> None:
    raw = np.frombuffer(b"\x00" * 8 + np.arange(5, dtype=np.float32).tobytes(), dtype=np.uint8)
    weights = [raw[8:16].view(np.float32), raw[16:28].view(np.float32).reshape(3, 1)]
    flat = flatten(weights)
    assert np.shares_memory(flat, raw)
    np.testing.assert_array_equal(flat, [0, 1, 2, 3, 4])


def test_flatten_copies_when_tensors_are_not_adjacent() -> None:
    base = np.arange(10, dtype=np.float32)
    weights = [base[:3], base[4:]]  # gap at index 3
    flat = flatten(weights)
    assert not np.shares_memory(flat, base)
    np.testing.assert_array_equal(flat, [0, 1, 2, 4, 5, 6, 7, 8, 9])


def test_flatten_copies_out_of_order_and_non_contiguous_and_float64_tensors() -> None:
    base = np.arange(6, dtype=np.float32)
    np.testing.assert_array_equal(flatten([base[3:], base[:3]]), [3, 4, 5, 0, 1, 2])
    matrix = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(flatten([matrix.T]), [0, 3, 1, 4, 2, 5])
    flat = flatten([np.array([0.5, 1.5])])
    assert flat.dtype == np.float32
    np.testing.assert_array_equal(flat, [0.5, 1.5])
    assert flatten([]).shape == (0,)


def test_split_by_shapes_round_trips_and_returns_views() -> None:
    weights = [f32([[1, 2], [3, 4]]), f32([5]), f32(np.zeros((0, 3)))]
    shapes = shapes_of(weights)
    assert shapes == [(2, 2), (1,), (0, 3)]
    vec = flatten(weights)
    back = split_by_shapes(vec, shapes)
    assert [t.shape for t in back] == [(2, 2), (1,), (0, 3)]
    np.testing.assert_array_equal(back[0], weights[0])
    assert np.shares_memory(back[0], vec)


def test_split_by_shapes_rejects_wrong_sizes() -> None:
    with pytest.raises(WeightsError, match="5 values but the shapes need 4"):
        split_by_shapes(np.zeros(5, dtype=np.float32), [(2, 2)])
    with pytest.raises(WeightsError, match="1-D"):
        split_by_shapes(np.zeros((2, 2), dtype=np.float32), [(2, 2)])


def test_flatten_single_contiguous_tensor_is_a_view() -> None:
    matrix = np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4))
    row_block = matrix.T  # C-contiguous view of a Fortran-ordered root
    flat = flatten([row_block])
    assert np.shares_memory(flat, matrix)


def test_flatten_float64_keeps_float64_values_and_views_a_float64_buffer() -> None:
    base = np.frombuffer(np.array([0.1, 1e-300, 3.0, 4.0]).tobytes(), dtype=np.float64)
    weights = [base[:2], base[2:].reshape(1, 2)]
    flat = flatten(weights, np.float64)
    assert flat.dtype == np.float64
    assert np.shares_memory(flat, base)
    np.testing.assert_array_equal(flat, [0.1, 1e-300, 3.0, 4.0])
    widened = flatten([f32([0.5]), f32([[1.5]])], np.float64)
    assert widened.dtype == np.float64
    np.testing.assert_array_equal(widened, [0.5, 1.5])


def test_split_by_shapes_keeps_the_dtype() -> None:
    parts = split_by_shapes(np.arange(5, dtype=np.uint32), [(2, 2), (1,)])
    assert [p.dtype for p in parts] == [np.uint32, np.uint32]
    assert parts[1].tolist() == [4]


SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)


@settings(derandomize=True, database=None, deadline=None, max_examples=100)
@given(st.lists(hnp.arrays(np.float32, SHAPES), max_size=5))
def test_flatten_then_split_gives_the_tensors_back(
    weights: list[npt.NDArray[np.float32]],
) -> None:
    flat = flatten(weights)
    assert flat.size == num_parameters(weights)
    back = split_by_shapes(flat, shapes_of(weights))
    assert shapes_of(back) == shapes_of(weights)
    for got, want in zip(back, weights, strict=True):
        assert got.tobytes() == want.tobytes()
    check_shapes(back, shapes_of(weights))
