"""Secure-aggregation arithmetic for decentralized peers: additive secret shares.

Two schemes:

* DISCO-compatible real shares (`make_shares` / `sum_shares`): n - 1 shares uniform in
  (-max_share_value, max_share_value), the last one = secret - their sum, as the 2.1.1 client
  does (`maxShareValue`, default 100). This only blurs the secret: a share is bounded, so a large
  last share still leaks information, and float rounding makes the sum inexact (float64 shares
  keep the error near 1e-13 x max_share_value; the JS client uses float32).
* Fixed-point shares modulo 2^32 (`to_fixed_point`, `make_masked_shares`, `sum_masked_shares`,
  `mean_from_fixed_point_sum`): values become int32 in two's complement with `scale_bits`
  fractional bits; n - 1 shares are uniform uint32 masks from the OS CSPRNG and the last is
  secret - sum(masks) mod 2^32, so any n - 1 shares are jointly uniform and reveal nothing.
  Sums wrap modulo 2^32 (numpy uint32 arithmetic) and are exact. The only error is the
  encoding's rounding: each value is off by at most 2^-(scale_bits + 1), and so is the mean.
"""

import math
import numbers
import secrets
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import AggregationError

DEFAULT_MAX_SHARE_VALUE = 100.0
"""DISCO's default `maxShareValue`."""
DEFAULT_SCALE_BITS = 16


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise AggregationError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_same_shape(arrays: Sequence[NDArray[Any]], what: str) -> None:
    if len(arrays) == 0:
        raise AggregationError(f"no {what} to sum")
    shape = arrays[0].shape
    for i, array in enumerate(arrays):
        if array.shape != shape:
            raise AggregationError(
                f"{what} {i} has shape {list(array.shape)}, expected {list(shape)}"
            )


def make_shares(
    secret: NDArray[np.floating[Any]],
    n: int,
    max_share_value: float = DEFAULT_MAX_SHARE_VALUE,
    rng: np.random.Generator | None = None,
) -> list[NDArray[np.float64]]:
    """Split `secret` into n float64 additive shares, DISCO style (see the module docstring).

    `rng` defaults to a generator seeded from the OS; pass one for reproducible tests.
    """
    count = _positive_int(n, "number of shares")
    if isinstance(max_share_value, bool) or not isinstance(max_share_value, numbers.Real):
        raise AggregationError(f"max_share_value must be a number, got {max_share_value!r}")
    bound = float(max_share_value)
    if not math.isfinite(bound) or bound <= 0:
        raise AggregationError(f"max_share_value must be positive and finite, got {bound}")
    values = np.asarray(secret, dtype=np.float64)
    if not np.isfinite(values).all():
        raise AggregationError("secret contains non-finite values (NaN or infinity)")
    generator = rng if rng is not None else np.random.default_rng(secrets.randbits(128))
    shares = [generator.uniform(-bound, bound, size=values.shape) for _ in range(count - 1)]
    last = values.copy()
    for share in shares:
        np.subtract(last, share, out=last)
    shares.append(last)
    return shares


def sum_shares(shares: Sequence[NDArray[np.floating[Any]]]) -> NDArray[np.float64]:
    """Element-wise float64 sum of real shares (or of partial sums)."""
    _check_same_shape(shares, "share")
    total = np.zeros(shares[0].shape, dtype=np.float64)
    for share in shares:
        np.add(total, share, out=total)
    if not np.isfinite(total).all():
        raise AggregationError("shares contain non-finite values (NaN or infinity)")
    return total


def _scale_bits(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise AggregationError(f"scale_bits must be an integer, got {value!r}")
    bits = int(value)
    if not 0 <= bits <= 30:
        raise AggregationError(f"scale_bits must be in [0, 30], got {bits}")
    return bits


def fixed_point_limit(scale_bits: int = DEFAULT_SCALE_BITS, n_summands: int = 1) -> float:
    """Largest |x| that `to_fixed_point` accepts so that a sum of n_summands cannot overflow."""
    bits = _scale_bits(scale_bits)
    count = _positive_int(n_summands, "n_summands")
    return ((2**31 - 1) // count) / float(2**bits)


def to_fixed_point(
    x: NDArray[np.floating[Any]], scale_bits: int = DEFAULT_SCALE_BITS, n_summands: int = 1
) -> NDArray[np.uint32]:
    """Encode reals as int32 with `scale_bits` fractional bits, stored as uint32 (mod 2^32).

    Rounds to nearest (error <= 2^-(scale_bits + 1)). Raises when some |x| exceeds
    `fixed_point_limit(scale_bits, n_summands)`, i.e. when the sum of `n_summands` such values
    (one per peer) could leave the int32 range and decode wrongly.
    """
    bits = _scale_bits(scale_bits)
    count = _positive_int(n_summands, "n_summands")
    values = np.asarray(x, dtype=np.float64)
    if not np.isfinite(values).all():
        raise AggregationError("value contains non-finite values (NaN or infinity)")
    scaled = np.rint(values * 2.0**bits)
    limit = (2**31 - 1) // count
    if scaled.size and float(np.abs(scaled).max()) > limit:
        raise AggregationError(
            f"values up to {float(np.abs(values).max()):g} do not fit: with {bits} fractional "
            f"bits and {count} summands |x| must stay <= {limit / 2**bits:g}"
        )
    return scaled.astype(np.int32).view(np.uint32)


def from_fixed_point(
    v: NDArray[np.uint32], scale_bits: int = DEFAULT_SCALE_BITS
) -> NDArray[np.float64]:
    """Decode uint32 fixed-point values (two's complement int32) back to reals."""
    bits = _scale_bits(scale_bits)
    if v.dtype != np.uint32:
        raise AggregationError(f"fixed-point values must be uint32, got {v.dtype}")
    decoded: NDArray[np.float64] = v.view(np.int32).astype(np.float64) / 2.0**bits
    return decoded


def mean_from_fixed_point_sum(
    total: NDArray[np.uint32], n_summands: int, scale_bits: int = DEFAULT_SCALE_BITS
) -> NDArray[np.float64]:
    """The mean of n_summands values, from the modular sum of their fixed-point encodings."""
    count = _positive_int(n_summands, "n_summands")
    return from_fixed_point(total, scale_bits) / count


def make_masked_shares(
    secret_fp: NDArray[np.uint32],
    n: int,
    random_bytes: Callable[[int], bytes] = secrets.token_bytes,
) -> list[NDArray[np.uint32]]:
    """Split a fixed-point secret into n shares modulo 2^32; each alone is uniform.

    The n - 1 masks come from `random_bytes` (default: the OS CSPRNG via `secrets`; numpy's
    generators are not cryptographic). Inject a deterministic source only in tests.
    """
    count = _positive_int(n, "number of shares")
    if secret_fp.dtype != np.uint32:
        raise AggregationError(f"fixed-point secret must be uint32, got {secret_fp.dtype}")
    nbytes = 4 * secret_fp.size
    shares: list[NDArray[np.uint32]] = []
    last = np.array(secret_fp, dtype=np.uint32, copy=True)
    for _ in range(count - 1):
        raw = random_bytes(nbytes)
        if len(raw) != nbytes:
            raise AggregationError(f"random source returned {len(raw)} bytes, wanted {nbytes}")
        mask = np.frombuffer(raw, dtype="<u4").astype(np.uint32).reshape(secret_fp.shape)
        np.subtract(last, mask, out=last)
        shares.append(mask)
    shares.append(last)
    return shares


def sum_masked_shares(shares: Sequence[NDArray[np.uint32]]) -> NDArray[np.uint32]:
    """Element-wise sum modulo 2^32 of fixed-point shares (or partial sums)."""
    _check_same_shape(shares, "share")
    for i, share in enumerate(shares):
        if share.dtype != np.uint32:
            raise AggregationError(f"share {i} must be uint32, got {share.dtype}")
    total = np.array(shares[0], dtype=np.uint32, copy=True)
    for share in shares[1:]:
        np.add(total, share, out=total)
    return total
