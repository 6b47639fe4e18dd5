"""A model's weights in memory: the `Weights` type and the pure helpers every layer shares.

The wire encodings (`disco.protocol.weights`), the task store, the aggregators, the federated
engine and both clients all handle weights as one numpy array per tensor, in the model's weight
order. This module is the single owner of that type and of the checks and reshapes done on it,
so it sits below every other package of disco (it imports only `disco.errors`).

Everything here is pure numpy without I/O; the errors say which tensor is wrong and how, in
words fit to be sent back to whoever supplied the weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeAlias, TypeVar, overload

import numpy as np
from numpy.typing import NDArray

from disco.errors import DiscoError

Shape: TypeAlias = tuple[int, ...]
"""The shape of one tensor, as numpy spells it."""

Weights: TypeAlias = list[NDArray[np.float32]]
"""One float32 array per weight tensor, in the model's weight order."""

_Float = TypeVar("_Float", bound=np.floating[Any])
_Scalar = TypeVar("_Scalar", bound=np.generic)

_FLOAT32 = np.dtype(np.float32)


class WeightsError(DiscoError, ValueError):
    """Weights that do not fit what is expected (count, shapes, finite values, size)."""


def shapes_of(weights: Sequence[NDArray[Any]]) -> list[Shape]:
    """The shapes of the tensors, in order."""
    return [tuple(int(d) for d in tensor.shape) for tensor in weights]


def num_parameters(weights: Sequence[NDArray[Any]]) -> int:
    """Total number of scalars over all tensors."""
    return sum(int(tensor.size) for tensor in weights)


def weights_nbytes(weights: Sequence[NDArray[Any]]) -> int:
    """Size of the weights as float32 (4 bytes per parameter)."""
    return _FLOAT32.itemsize * num_parameters(weights)


def first_non_finite(weights: Sequence[NDArray[Any]]) -> int | None:
    """Index of the first tensor holding NaN or infinity, if any."""
    for index, tensor in enumerate(weights):
        if not bool(np.isfinite(tensor).all()):
            return index
    return None


def check_finite(weights: Sequence[NDArray[Any]]) -> None:
    """Refuse NaN/Inf: one such update would poison an averaged model for everyone."""
    index = first_non_finite(weights)
    if index is not None:
        raise WeightsError(f"weights hold NaN or Inf (tensor {index})")


def check_shapes(weights: Sequence[NDArray[Any]], shapes: Sequence[Sequence[int]]) -> None:
    """Refuse weights whose tensor count or shapes differ from `shapes` (the model's)."""
    if len(weights) != len(shapes):
        raise WeightsError(f"expected {len(shapes)} weight tensors, got {len(weights)}")
    for index, (tensor, expected) in enumerate(zip(weights, shapes, strict=True)):
        if tensor.shape == expected:  # the usual case: the model's own tuples (ints compare)
            continue
        got = [int(d) for d in tensor.shape]
        want = [int(d) for d in expected]
        if got != want:
            raise WeightsError(f"weight tensor {index} has shape {got}, expected {want}")


def as_float32(weights: Sequence[NDArray[Any]]) -> Weights:
    """The tensors as float32 arrays (no copy for those that already are)."""
    return [np.asarray(tensor, dtype=np.float32) for tensor in weights]


def _root(array: NDArray[Any]) -> NDArray[Any]:
    """The outermost ndarray whose memory `array` views."""
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def contiguous_view(
    weights: Sequence[NDArray[Any]], dtype: type[np.floating[Any]] = np.float32
) -> NDArray[Any] | None:
    """A zero-copy 1-D view over all tensors when they sit back to back in one buffer.

    That is the layout of weights decoded from one byte string (native encoding, weights.bin),
    so the common path of the server and the aggregators needs no copy at all. None when the
    tensors are not consecutive C-contiguous arrays of `dtype` in one buffer.
    """
    if not weights:
        return None
    wanted = np.dtype(dtype)
    root = _root(weights[0])
    if not root.flags.c_contiguous:
        return None
    root_start: int = root.__array_interface__["data"][0]
    start: int = weights[0].__array_interface__["data"][0]
    cursor = start
    for tensor in weights:
        if tensor is not root and tensor.base is not root and _root(tensor) is not root:
            return None
        if tensor.dtype != wanted or not tensor.flags.c_contiguous:
            return None
        nbytes = tensor.nbytes
        if nbytes == 0:
            continue
        if tensor.__array_interface__["data"][0] != cursor:
            return None
        cursor += nbytes
    offset = start - root_start
    if offset < 0 or cursor - root_start > root.nbytes:
        return None
    count = (cursor - start) // wanted.itemsize
    return np.frombuffer(root, dtype=wanted, count=count, offset=offset)


@overload
def flatten(weights: Sequence[NDArray[Any]]) -> NDArray[np.float32]: ...


@overload
def flatten(weights: Sequence[NDArray[Any]], dtype: type[_Float]) -> NDArray[_Float]: ...


def flatten(
    weights: Sequence[NDArray[Any]], dtype: type[np.floating[Any]] = np.float32
) -> NDArray[Any]:
    """All tensors as a single vector of `dtype` (float32 unless told), in order, row-major.

    Zero-copy when the tensors are consecutive `dtype` views into one buffer; otherwise one
    concatenating copy (converting other float dtypes). Treat the result as read-only: it may
    alias the input.
    """
    view = contiguous_view(weights, dtype)
    if view is not None:
        return view
    wanted = np.dtype(dtype)
    if len(weights) == 1 and weights[0].dtype == wanted and weights[0].flags.c_contiguous:
        return weights[0].reshape(-1)
    if not weights:
        return np.empty(0, dtype=wanted)
    return np.concatenate([np.ravel(t) for t in weights], dtype=wanted, casting="same_kind")


def split_by_shapes(
    vector: NDArray[_Scalar], shapes: Sequence[Sequence[int]]
) -> list[NDArray[_Scalar]]:
    """Views of a 1-D vector as consecutive tensors of `shapes` (no copy, dtype kept)."""
    if vector.ndim != 1:
        raise WeightsError(f"expected a 1-D vector, got shape {list(vector.shape)}")
    sizes = [math.prod(shape) for shape in shapes]
    if sum(sizes) != vector.size:
        raise WeightsError(f"vector has {vector.size} values but the shapes need {sum(sizes)}")
    out: list[NDArray[_Scalar]] = []
    offset = 0
    for shape, size in zip(shapes, sizes, strict=True):
        out.append(vector[offset : offset + size].reshape(tuple(shape)))
        offset += size
    return out
