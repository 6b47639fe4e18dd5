"""Fixed-point vectors modulo 2^64 and the masks of federated secure aggregation (SecAgg+).

Encoding. A real vector becomes int64 in two's complement with `fractional_bits` fractional bits,
held as uint64 so that sums wrap modulo 2^64 exactly (numpy unsigned arithmetic). Rounding to
nearest makes each value off by at most 2^-(fractional_bits + 1); `encode` refuses values whose
sum over `summands` vectors could leave the int64 range, so a decoded sum is always right.
With the default 24 fractional bits that range is about ±5e11 / summands, ample for weights
multiplied by sample counts, and the rounding (3e-8) stays below float32 resolution near 1.

Masks. A mask is the AES-256-CTR keystream of a 32-byte seed (zero counter block) read as
little-endian uint64: a CSPRNG output, the same in every language that has AES-CTR (WebCrypto
included). Participant i adds its self mask PRG(b_i), and for every neighbour j the pairwise mask
PRG(s_ij), added when i < j and subtracted when i > j, so the pairwise masks cancel in the sum of
everyone's masked vectors. Each seed must serve one vector only (they are derived per round).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from numpy.typing import NDArray

from .errors import AggregationError

MODULUS_BITS = 64
"""Vectors are summed modulo 2^MODULUS_BITS."""
DEFAULT_FRACTIONAL_BITS = 24
SEED_BYTES = 32
_INT64_MAX = 2**63 - 1

Masked = NDArray[np.uint64]


def _fractional_bits(bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 0 <= bits <= 52:
        raise AggregationError(f"fractional_bits must be an integer in [0, 52], got {bits!r}")
    return bits


def encoding_limit(fractional_bits: int = DEFAULT_FRACTIONAL_BITS, summands: int = 1) -> float:
    """Largest |x| that `encode` accepts so that a sum of `summands` vectors cannot overflow."""
    if summands < 1:
        raise AggregationError("summands must be positive")
    return (_INT64_MAX // summands) / 2.0 ** _fractional_bits(fractional_bits)


def encode(
    values: NDArray[np.floating[Any]],
    fractional_bits: int = DEFAULT_FRACTIONAL_BITS,
    summands: int = 1,
) -> Masked:
    """Reals as fixed-point uint64 (two's complement), summable `summands` times mod 2^64."""
    bits = _fractional_bits(fractional_bits)
    array = np.asarray(values, dtype=np.float64)
    if not np.isfinite(array).all():
        raise AggregationError("values hold NaN or infinity")
    scaled = np.rint(array * 2.0**bits)
    limit = encoding_limit(bits, summands) * 2.0**bits
    if scaled.size and float(np.abs(scaled).max()) > limit:
        raise AggregationError(
            f"values up to {float(np.abs(array).max()):g} do not fit: with {bits} fractional "
            f"bits and {summands} participants |x| must stay <= {limit / 2.0**bits:g}"
        )
    return scaled.astype(np.int64).view(np.uint64)


def decode(total: Masked, fractional_bits: int = DEFAULT_FRACTIONAL_BITS) -> NDArray[np.float64]:
    """The reals whose fixed-point encodings sum to `total` modulo 2^64."""
    bits = _fractional_bits(fractional_bits)
    if total.dtype != np.uint64:
        raise AggregationError(f"a fixed-point vector is uint64, got {total.dtype}")
    decoded: NDArray[np.float64] = total.view(np.int64).astype(np.float64) / 2.0**bits
    return decoded


_ZEROS = bytearray()
_ZEROS_LOCK = threading.Lock()


def _zeros(size: int) -> memoryview:
    """A read-only view of `size` zero bytes (one shared buffer, grown on demand)."""
    global _ZEROS
    with _ZEROS_LOCK:
        if len(_ZEROS) < size:
            _ZEROS = bytearray(size)
        return memoryview(_ZEROS).toreadonly()[:size]


def expand(seed: bytes, length: int) -> Masked:
    """`length` uint64 words of the AES-256-CTR keystream of `seed` (a CSPRNG stream)."""
    if len(seed) != SEED_BYTES:
        raise AggregationError(f"a mask seed is {SEED_BYTES} bytes, got {len(seed)}")
    if length < 0:
        raise AggregationError("a mask length is non-negative")
    encryptor = Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor()
    out = np.empty(length + 2, dtype="<u8")  # update_into wants 15 bytes of slack
    encryptor.update_into(_zeros(8 * length), out.data.cast("B"))
    return out[:length].view(np.uint64)


def mask(encoded: Masked, self_seed: bytes, pair_seeds: Mapping[int, bytes], index: int) -> Masked:
    """`encoded` + PRG(self_seed) ± PRG(s_ij) for each neighbour j (+ when index < j)."""
    if encoded.dtype != np.uint64:
        raise AggregationError(f"a fixed-point vector is uint64, got {encoded.dtype}")
    length = encoded.size
    result = np.array(encoded, dtype=np.uint64, copy=True).reshape(-1)
    np.add(result, expand(self_seed, length), out=result)
    for neighbour, seed in pair_seeds.items():
        if neighbour == index:
            raise AggregationError("a participant has no pairwise mask with itself")
        if index < neighbour:
            np.add(result, expand(seed, length), out=result)
        else:
            np.subtract(result, expand(seed, length), out=result)
    return result


def add_into(total: Masked, vector: Masked) -> None:
    """total += vector modulo 2^64 (shapes must match)."""
    if vector.dtype != np.uint64 or vector.shape != total.shape:
        raise AggregationError(
            f"a masked vector must be uint64 of shape {list(total.shape)}, got "
            f"{vector.dtype} {list(vector.shape)}"
        )
    np.add(total, vector, out=total)


def unmask(
    masked_sum: Masked,
    self_seeds: Iterable[bytes],
    dropped_pairs: Iterable[tuple[int, int, bytes]],
) -> Masked:
    """The sum of the survivors' encoded vectors from the sum of their masked vectors.

    `self_seeds`: the reconstructed self-mask seed of every survivor. `dropped_pairs`: for each
    survivor i and each neighbour j of i that dropped out after the masks were fixed,
    `(i, j, s_ij)`: the mask i applied for j, which nobody cancels since j's vector is missing.
    """
    result = np.array(masked_sum, dtype=np.uint64, copy=True)
    length = result.size
    for seed in self_seeds:
        np.subtract(result, expand(seed, length), out=result)
    for survivor, dropped, seed in dropped_pairs:
        if survivor < dropped:
            np.subtract(result, expand(seed, length), out=result)
        else:
            np.add(result, expand(seed, length), out=result)
    return result
