"""Vectorized codec of the 2.1.1 client's legacy weights, with numpy instead of a Python object per
byte or per number.

The legacy payload travels as a msgpack array of byte-integers (each byte a positive fixint, or
0xcc + the byte when it is 128 or more) holding the msgpack encoding of `[{shape, data}, ...]`
whose `data` are numbers (msgpack-lite writes non-integral JS numbers as float64, integral ones
as msgpack ints). Decoding that generically builds a Python int per byte and a Python float per
parameter (~240 ms and hundreds of MB per 1e6 parameters); here both levels are scanned with a
constant number of numpy passes per block of input, straight into float32.

Everything is untrusted input: every length is checked against the bytes actually present, and
a definite fault (truncated, wrong lengths, wrong structure) raises ProtocolError with a reason.
Valid msgpack that this fast path does not handle (non-canonical integer widths, booleans among
the numbers, extra map keys, ...) raises `Unhandled`: the caller then decodes with the generic
reference decoder, so both always accept and refuse the same inputs (checked by property tests).
Pure functions, thread-safe; callers run them off the event loop for big payloads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import msgpack
import numpy as np
import numpy.typing as npt

from disco.errors import DiscoError
from disco.protocol.errors import ProtocolError
from disco.protocol.framing import (
    MAX_CONTAINERS,
    pack_array_header,
    pack_map_header,
    unpack_message,
)

U8 = npt.NDArray[np.uint8]

SCAN_BLOCK = 128 * 1024
"""Bytes scanned per numpy pass. Small enough that a block and its temporaries (an 8-byte index
per kept byte included) stay in the CPU cache and come from reused heap memory (below the
allocator's mmap threshold, see `disco.server.allocator`): a temporary mapped afresh faults its
pages in, which costs more than the scan itself."""
SMALL_MIXED = 4096
"""A data array of at most this many numbers that are not all float64 is decoded by msgpack's C
decoder at once (~50 ns per number) instead of run by run (a few µs per run): the biases of a
ReLU layer hold exact zeros, which msgpack-lite writes as fixints among the float64s."""
RUNS_PER_NUMBERS = 1024
"""A long data array is decoded run by run while it averages at least this many numbers per
run; past that (many short runs), msgpack's decoder takes the rest: the cost per number stays
bounded whatever the mix of encodings a client sends."""

UINT8 = 0xCC
FLOAT32 = 0xCA
FLOAT64 = 0xCB
_INT_WIDTHS = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}
_INT_DTYPES = {
    0xCC: ">u1", 0xCD: ">u2", 0xCE: ">u4", 0xCF: ">u8",
    0xD0: ">i1", 0xD1: ">i2", 0xD2: ">i4", 0xD3: ">i8",
}  # fmt: skip
EXACT_INT = 2**53
"""Integers beyond this lose precision differently through float64 and directly to float32:
such (exotic) payloads go to the reference decoder, which defines the result."""


class Unhandled(DiscoError):
    """Input outside the fast path (valid msgpack it does not handle, or a structure whose fault
    the reference decoder names better): decode it with the reference decoder."""


def truncated(detail: str) -> ProtocolError:
    """The refusal of input that ends before what it announces."""
    return ProtocolError(f"legacy weights are not decodable msgpack: truncated, {detail}")


# ---------------------------------------------------------------------------------------------
# msgpack headers


def array_header(data: U8 | bytes, pos: int) -> tuple[int, int] | None:
    """(element count, position after the header) of a msgpack array at `pos`; None when the
    byte there is not an array header. ProtocolError when the header itself is cut short."""
    if pos >= len(data):
        raise truncated("an array header is missing")
    marker = int(data[pos])
    if 0x90 <= marker <= 0x9F:
        return marker & 0x0F, pos + 1
    if marker in (0xDC, 0xDD):
        width = 2 if marker == 0xDC else 4
        if pos + 1 + width > len(data):
            raise truncated("in an array header")
        return int.from_bytes(bytes(data[pos + 1 : pos + 1 + width]), "big"), pos + 1 + width
    return None


def map_header(data: U8 | bytes, pos: int) -> tuple[int, int] | None:
    """(entry count, position after the header) of a msgpack map at `pos`, or None."""
    if pos >= len(data):
        raise truncated("a map header is missing")
    marker = int(data[pos])
    if 0x80 <= marker <= 0x8F:
        return marker & 0x0F, pos + 1
    if marker in (0xDE, 0xDF):
        width = 2 if marker == 0xDE else 4
        if pos + 1 + width > len(data):
            raise truncated("in a map header")
        return int.from_bytes(bytes(data[pos + 1 : pos + 1 + width]), "big"), pos + 1 + width
    return None


# ---------------------------------------------------------------------------------------------
# The outer array of byte-integers


def encode_byte_array(payload: U8 | bytes) -> bytes:
    """msgpack array whose elements are the bytes of `payload` (fixint, or 0xcc + byte >= 128):
    exactly what msgpack writes for `list(payload)`."""
    data = np.frombuffer(payload, dtype=np.uint8) if isinstance(payload, bytes) else payload
    return pack_array_header(int(data.size)) + _byte_integers(data)


def _byte_integers(data: U8) -> bytes:
    """The elements of `encode_byte_array` (without its array header)."""
    parts = []
    for start in range(0, int(data.size), SCAN_BLOCK):
        parts.append(_byte_elements(data[start : start + SCAN_BLOCK]).tobytes())
    return b"".join(parts)


def _byte_elements(block: U8) -> U8:
    """The msgpack elements of the bytes of `block`: each byte as the pair (0xcc, byte),
    keeping the 0xcc only for bytes >= 128."""
    pairs = np.empty((block.size, 2), dtype=np.uint8)
    pairs[:, 0] = UINT8
    pairs[:, 1] = block
    keep = np.empty((block.size, 2), dtype=bool)
    np.greater_equal(block, 0x80, out=keep[:, 0])
    keep[:, 1] = True
    return np.compress(keep.reshape(-1), pairs.reshape(-1))


def _run_starts(positions: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
    """For sorted positions that continue a run (each preceded by a run member), the position
    where each one's run starts."""
    opens = np.ones(positions.size, dtype=bool)
    opens[1:] = positions[1:] != positions[:-1] + 1
    start = np.where(opens, positions - 1, 0)
    np.maximum.accumulate(start, out=start)
    return start


def decode_byte_array(data: U8, pos: int, in_place: bool = False) -> tuple[U8, int]:
    """The bytes held by the msgpack array of byte-integers at `pos`, and the position after it.

    Elements must be positive fixints or uint8 (0xcc + value) — any other element encoding
    raises `Unhandled`; an array running past the end of `data` raises ProtocolError.
    Per block: find the markers (a few vectorized passes, see `_markers`), check that every
    other element is a fixint, keep the bytes that are not markers.

    `in_place` (`data` writable): the bytes are compacted over the array's own elements and
    returned as a view of `data`, instead of into a new buffer the size of the payload (a
    legacy post's payload is ~70 % of its frame). Each element takes at least one byte, so
    the compacted bytes never overtake what is still to be read. Then only canonical elements
    are taken (a uint8 below 128 is `Unhandled` too, as msgpack-lite never writes one), so
    that on any refusal the elements are written back exactly as they were (`_restore`): the
    caller can then hand the untouched frame to the reference decoder.
    """
    header = array_header(data, pos)
    if header is None:
        raise Unhandled("not an array")
    count, pos = header
    if count > len(data) - pos:
        raise _truncated_bytes(count, len(data) - pos)
    if not in_place:
        return _compact(data, pos, count, np.empty(count, dtype=np.uint8))
    scratch = np.empty(min(SCAN_BLOCK, count), dtype=np.uint8)
    return _compact(data, pos, count, data[pos : pos + count], scratch)


def _compact(
    data: U8, pos: int, count: int, out: U8, scratch: U8 | None = None
) -> tuple[U8, int]:
    """`decode_byte_array`'s scan of the `count` elements at `pos` into `out`. With `scratch`,
    in place (`out` is `data[pos:pos + count]`): each block's bytes go through `scratch`, only
    canonical elements are accepted, and on any refusal the elements are restored."""
    canonical = scratch is not None
    start = pos
    filled = 0
    try:
        while filled < count:
            if pos >= len(data):
                raise _truncated_bytes(count, filled)
            wanted = count - filled
            block = data[pos : pos + min(SCAN_BLOCK, 2 * wanted)]
            marker = _markers(block)
            kept = np.flatnonzero(~marker)  # positions of the elements' values
            used = block.size
            if kept.size >= wanted:  # the array ends in this block: what follows is not checked
                used = int(kept[wanted - 1]) + 1
                kept = kept[:wanted]
            if _odd(block[:used], marker[:used], canonical):
                raise Unhandled("a byte-integer that is neither a fixint nor a uint8")
            if scratch is None:
                np.take(block, kept, out=out[filled : filled + kept.size], mode="clip")
            else:  # `out` may overlap the block: through the scratch buffer
                np.take(block, kept, out=scratch[: kept.size], mode="clip")
                out[filled : filled + kept.size] = scratch[: kept.size]
            filled += kept.size
            pos += used
            if filled < count and marker[used - 1]:  # the marker's value opens the next block
                if pos >= len(data):
                    raise _truncated_bytes(count, filled)
                if canonical and data[pos] < 0x80:
                    raise Unhandled("a uint8 byte-integer below 128")
                out[filled] = data[pos]
                pos += 1
                filled += 1
    except BaseException:
        if canonical:
            _restore(data, start, out[:filled])
        raise
    return out, pos


def _restore(data: U8, pos: int, done: U8) -> None:
    """Undo an in-place scan stopped part way: `done`, the bytes compacted over the elements at
    `pos` (all canonical), is encoded back over them."""
    values = done.copy()
    for first in range(0, values.size, SCAN_BLOCK):
        elements = _byte_elements(values[first : first + SCAN_BLOCK])
        data[pos : pos + elements.size] = elements
        pos += elements.size


def _truncated_bytes(count: int, found: int) -> ProtocolError:
    return truncated(f"the byte array announces {count} bytes, the frame holds {found}")


def _markers(block: U8) -> npt.NDArray[np.bool_]:
    """Which bytes of `block` (starting on an element) are 0xcc markers.

    A run of 0xcc bytes always starts on an element (the byte before it is a fixint or a
    marker's value), so along the run markers and values (204) alternate from its start.
    """
    marker: npt.NDArray[np.bool_] = block == UINT8
    inside = np.flatnonzero(marker[1:] & marker[:-1]) + 1  # 0xcc after 0xcc: rare
    if inside.size:
        marker[inside] = ((inside - _run_starts(inside)) & 1) == 0
    return marker


def _odd(block: U8, marker: npt.NDArray[np.bool_], canonical: bool = False) -> bool:
    """True when an element of `block` (up to the array's end) is neither a fixint nor a
    uint8: a byte >= 128 that is neither a marker nor a marker's value. `canonical`: also a
    marker's value below 128 (a uint8 msgpack would have written as a fixint)."""
    odd = block >= 0x80
    if canonical:  # a value must be >= 128 exactly where it follows a marker
        np.not_equal(odd[1:], marker[:-1], out=odd[1:])
        np.greater(odd, marker, out=odd)  # ... & ~marker
        return bool(odd.any())
    np.greater(odd, marker, out=odd)  # odd & ~marker
    np.greater(odd[1:], marker[:-1], out=odd[1:])  # ... & not after a marker
    return bool(odd.any())


# ---------------------------------------------------------------------------------------------
# The inner payload: [{shape, data}, ...]


def encode_payload(weights: Sequence[npt.NDArray[Any]], single: bool = False) -> bytes:
    """msgpack `[{shape: [...], data: [float64, ...]}, ...]`, exactly as msgpack writes it for
    `[{"shape": [...], "data": tensor.astype(float64).ravel().tolist()}, ...]`.

    `single`: the numbers as msgpack float32 (5 bytes each instead of 9), as msgpack writes them
    with `use_single_float=True`. For float32 tensors the numbers a decoder gets are the same
    (msgpack-lite, like every decoder, widens a float32 exactly to the JS number).
    """
    marker, dtype, width = (FLOAT32, ">f4", 5) if single else (FLOAT64, ">f8", 9)
    parts = [pack_array_header(len(weights))]
    shape_key, data_key = msgpack.packb("shape"), msgpack.packb("data")
    for tensor in weights:
        values = np.asarray(tensor).reshape(-1)
        parts.append(pack_map_header(2))
        parts.append(shape_key + msgpack.packb([int(d) for d in tensor.shape]))
        parts.append(data_key + pack_array_header(int(values.size)))
        step = max(1, SCAN_BLOCK // width)
        for start in range(0, int(values.size), step):
            chunk = values[start : start + step]
            cells = np.empty((chunk.size, width), dtype=np.uint8)
            cells[:, 0] = marker
            with np.errstate(over="ignore"):  # float64 beyond float32 range: Inf, as msgpack
                cells[:, 1:] = chunk.astype(dtype).view(np.uint8).reshape(-1, width - 1)
            parts.append(cells.tobytes())
    return b"".join(parts)


def decode_numbers(data: U8, pos: int, count: int) -> tuple[npt.NDArray[np.float32], int]:
    """`count` msgpack numbers from `pos` as float32, and the position after them.

    All float64 (what msgpack-lite writes for non-integral numbers): one numpy conversion.
    Otherwise runs of elements of one encoding (float64, float32, one integer width, or 1-byte
    fixints) are converted with one numpy call each, as long as runs are long; small arrays and
    arrays of short runs go to msgpack's decoder (`_unpack_numbers`). Raises ProtocolError when
    `data` ends first, `Unhandled` for elements that are not numbers (or integers beyond
    `EXACT_INT`).
    """
    floats = _all_float64(data, pos, count)
    if floats is not None:
        return floats
    if count <= SMALL_MIXED:
        return _unpack_numbers(data, pos, count)
    out = np.empty(count, dtype=np.float32)
    done = 0
    runs = 0
    probe = 64
    while done < count:
        if runs * RUNS_PER_NUMBERS > max(done, SMALL_MIXED):  # short runs: let msgpack finish
            rest, pos = _unpack_numbers(data, pos, count - done)
            out[done:] = rest
            return out, pos
        if pos >= len(data):
            raise truncated(f"a data array announces {count} numbers, the payload ends at {done}")
        marker = int(data[pos])
        width = _element_width(marker)
        available = (len(data) - pos) // width
        if available == 0:
            raise truncated("inside a number")
        take = min(count - done, available, probe)
        cells = data[pos : pos + take * width].reshape(take, width)
        heads = cells[:, 0]
        same = ((heads < 0x80) | (heads >= 0xE0)) if width == 1 else heads == marker
        run = take if bool(same.all()) else int(np.argmin(same))
        _convert(cells[:run], marker, width, out[done : done + run])
        done += run
        pos += run * width
        runs += 1
        probe = min(probe * 2, SCAN_BLOCK) if run == take else 64
    return out, pos


def _all_float64(data: U8, pos: int, count: int) -> tuple[npt.NDArray[np.float32], int] | None:
    """The numbers when all `count` are float64 (and present), else None."""
    end = pos + 9 * count
    if count == 0 or end > len(data) or not bool((data[pos:end:9] == FLOAT64).all()):
        return None
    out = np.empty(count, dtype=np.float32)
    _convert(data[pos:end].reshape(count, 9), FLOAT64, 9, out)
    return out, end


def _convert(cells: U8, marker: int, width: int, target: npt.NDArray[np.float32]) -> None:
    """Fixed-width msgpack numbers of one encoding (`marker`) into `target`."""
    with np.errstate(over="ignore"):  # float64 beyond float32 range becomes Inf, as before
        if width == 1:
            np.copyto(target, cells[:, 0].view(np.int8), casting="unsafe")
        elif marker == FLOAT64:
            np.copyto(target, _field(cells, ">f8"), casting="unsafe")
        elif marker == FLOAT32:
            np.copyto(target, _field(cells, ">f4"), casting="unsafe")
        else:
            ints = _field(cells, _INT_DTYPES[marker])
            if ints.size and (int(ints.max()) > EXACT_INT or int(ints.min()) < -EXACT_INT):
                raise Unhandled("an integer beyond 2**53")
            np.copyto(target, ints, casting="unsafe")


class _NotNumbers(DiscoError):
    """Raised from msgpack's hooks: a container or ext among the numbers."""


class _OneArray:
    """msgpack list hook letting through one array (the numbers) and no other container."""

    __slots__ = ("seen",)

    def __init__(self) -> None:
        self.seen = False

    def __call__(self, values: list[Any]) -> list[Any]:
        if self.seen:
            raise _NotNumbers
        self.seen = True
        return values


def _no_container(*_: Any) -> Any:
    raise _NotNumbers


def _unpack_numbers(data: U8, pos: int, count: int) -> tuple[npt.NDArray[np.float32], int]:
    """`decode_numbers` by msgpack's C decoder: each number is at most 9 bytes, so the array is
    decoded from that many bytes at most; anything but ints and floats (or an int beyond
    `EXACT_INT`) is `Unhandled`, and the reference decoder judges it."""
    if count == 0:
        return np.empty(0, dtype=np.float32), pos
    limit = min(len(data), pos + 9 * count)
    header = pack_array_header(count)
    chunk = header + data[pos:limit].tobytes()
    unpacker = msgpack.Unpacker(
        raw=False, list_hook=_OneArray(), object_hook=_no_container, ext_hook=_no_container,
        max_buffer_size=len(chunk), max_str_len=len(chunk), max_bin_len=len(chunk),
        max_array_len=len(chunk), max_map_len=len(chunk), max_ext_len=len(chunk),
    )  # fmt: skip
    unpacker.feed(chunk)
    try:
        values = unpacker.unpack()
    except msgpack.OutOfData:
        if limit == len(data):
            raise truncated(f"a data array announces {count} numbers") from None
        raise Unhandled("data elements longer than a number") from None
    except Exception:  # not numbers (hooks), invalid or reserved bytes: the reference decides
        raise Unhandled("data elements that are not numbers") from None
    if not all(type(value) is float or type(value) is int for value in values):
        raise Unhandled("data elements that are not numbers")
    if any(type(value) is int and not -EXACT_INT <= value <= EXACT_INT for value in values):
        raise Unhandled("an integer beyond 2**53")
    with np.errstate(over="ignore"):
        out = np.asarray(values, dtype=np.float64).astype(np.float32)
    return out, pos + unpacker.tell() - len(header)


def _field(cells: U8, dtype: str) -> npt.NDArray[Any]:
    """The values (after the marker) of fixed-width msgpack cells, as a strided `dtype` view."""
    layout = np.dtype([("marker", "u1"), ("value", dtype)])
    records = np.frombuffer(cells.reshape(-1), dtype=layout)
    return records["value"]


def _element_width(marker: int) -> int:
    if marker < 0x80 or marker >= 0xE0:
        return 1
    if marker == FLOAT64:
        return 9
    if marker == FLOAT32:
        return 5
    width = _INT_WIDTHS.get(marker)
    if width is None:
        raise Unhandled(f"a data element with msgpack marker 0x{marker:02x}")
    return 1 + width


SHAPE_KEY = msgpack.packb("shape")
DATA_KEY = msgpack.packb("data")
MAX_SHAPE_SCAN = 64
"""Longer shape arrays (never valid) are left to the reference decoder to refuse."""


class ByteArray:
    """The bytes of a frame's array of byte-integers, decoded with numpy (`unpack_frame`): what
    the generic decoder would give as a list of ints, without the Python int per byte."""

    __slots__ = ("data",)

    def __init__(self, data: U8) -> None:
        self.data = data


def decode_payload(raw: U8 | bytes | bytearray) -> list[tuple[list[int], npt.NDArray[np.float32]]]:
    """The tensors of a legacy payload `[{shape, data}, ...]` as (shape as sent, float32 values).

    When every number is float64 (what msgpack-lite writes for trained weights), the values are
    consecutive views of one float32 buffer: the server flattens such an update without a copy
    (`weights.flatten`), instead of concatenating one array per tensor.
    Shapes are returned unchecked: the caller validates them as it does the reference decoder's.
    ProtocolError for definite faults, `Unhandled` for what the reference decoder must judge.
    """
    data = raw if isinstance(raw, np.ndarray) else np.frombuffer(raw, dtype=np.uint8)
    header = array_header(data, 0)
    if header is None:
        raise Unhandled("not an array")
    count, pos = header
    if count > data.size - pos:
        raise truncated(f"{count} tensors announced in {data.size} bytes")
    if 1 + 3 * count > MAX_CONTAINERS:  # the array, and per tensor a map and two arrays
        raise ProtocolError(
            f"legacy weights hold more than {MAX_CONTAINERS} msgpack maps and arrays"
        )
    together = _float64_together(data, pos, count)
    if together is not None:
        return together
    tensors: list[tuple[list[int], npt.NDArray[np.float32]]] = []
    for index in range(count):
        shape, values, pos = _tensor(data, pos, index, decode_numbers)
        tensors.append((shape, values))
    if pos != data.size:
        raise ProtocolError("legacy weights have trailing bytes after the msgpack object")
    return tensors


T = TypeVar("T")
Span = tuple[int, int]
"""(position, count) of a data array's float64 numbers."""


def _float64_together(
    data: U8, pos: int, count: int
) -> list[tuple[list[int], npt.NDArray[np.float32]]] | None:
    """`decode_payload`'s tensors in one float32 buffer when the payload is well formed and all
    its numbers are float64; None otherwise (the tensor by tensor decode then decides)."""
    spans: list[tuple[list[int], Span]] = []
    try:
        for index in range(count):
            shape, span, pos = _tensor(data, pos, index, _float64_span)
            spans.append((shape, span))
    except (ProtocolError, Unhandled):
        return None
    if pos != data.size:
        return None
    out = np.empty(sum(numbers for _, (_, numbers) in spans), dtype=np.float32)
    tensors: list[tuple[list[int], npt.NDArray[np.float32]]] = []
    done = 0
    for shape, (at, numbers) in spans:
        values = out[done : done + numbers]
        _convert(data[at : at + 9 * numbers].reshape(numbers, 9), FLOAT64, 9, values)
        tensors.append((shape, values))
        done += numbers
    return tensors


def _float64_span(data: U8, pos: int, count: int) -> tuple[Span, int]:
    """The span of `count` float64 numbers at `pos` (not converted yet) and the position after
    them; `Unhandled` when they are not all float64."""
    end = pos + 9 * count
    if end > len(data) or not bool((data[pos:end:9] == FLOAT64).all()):
        raise Unhandled("numbers that are not all float64")
    return (pos, count), end


def _tensor(
    data: U8, pos: int, index: int, numbers: Callable[[U8, int, int], tuple[T, int]]
) -> tuple[list[int], T, int]:
    """One `{shape, data}` map at `pos`: (shape as sent, what `numbers` makes of the data
    array, position after the map)."""
    entry = map_header(data, pos)
    if entry is None:
        raise Unhandled("a tensor that is not a map")
    entries, pos = entry
    if entries != 2:
        raise Unhandled("a tensor map without exactly two entries")
    shape: list[int] | None = None
    values: tuple[T] | None = None
    for _ in range(2):
        if shape is None and _at(data, pos, SHAPE_KEY):
            shape, pos = _shape(data, pos + len(SHAPE_KEY), index)
        elif values is None and _at(data, pos, DATA_KEY):
            array = array_header(data, pos + len(DATA_KEY))
            if array is None:
                raise Unhandled("data that is not an array")
            count, pos = array
            if count > data.size - pos:
                raise truncated(
                    f"weight tensor {index} announces {count} numbers, only "
                    f"{data.size - pos} bytes follow"
                )
            decoded, pos = numbers(data, pos, count)
            values = (decoded,)
        else:
            raise Unhandled("a tensor map key other than one shape and one data")
    assert shape is not None and values is not None
    return shape, values[0], pos


def _at(data: U8, pos: int, key: bytes) -> bool:
    return bytes(data[pos : pos + len(key)]) == key


def _shape(data: U8, pos: int, index: int) -> tuple[list[int], int]:
    """A shape array of msgpack integers (any width) and the position after it."""
    header = array_header(data, pos)
    if header is None:
        raise Unhandled("a shape that is not an array")
    count, pos = header
    if count > MAX_SHAPE_SCAN:
        raise Unhandled("a long shape array")
    dims: list[int] = []
    for _ in range(count):
        if pos >= data.size:
            raise truncated(f"in the shape of weight tensor {index}")
        marker = int(data[pos])
        if marker < 0x80 or marker >= 0xE0:
            dims.append(marker if marker < 0x80 else marker - 0x100)
            pos += 1
            continue
        width = _INT_WIDTHS.get(marker)
        if width is None:
            raise Unhandled("a shape element that is not an integer")
        if pos + 1 + width > data.size:
            raise truncated(f"in the shape of weight tensor {index}")
        dims.append(
            int.from_bytes(bytes(data[pos + 1 : pos + 1 + width]), "big", signed=marker >= 0xD0)
        )
        pos += 1 + width
    return dims, pos


# ---------------------------------------------------------------------------------------------
# Frames


FAST_FRAME_BYTES = 4096
"""Smaller frames are decoded by the reference decoder at once (nothing to gain)."""
MAX_FRAME_KEYS = 64
"""Frames with more top-level keys (never sent by real clients) go to the reference decoder."""
WEIGHTS_KEY = b"weights"
SKIP_READ = 4096
NIL = b"\xc0"


def unpack_frame(
    frame: bytes | bytearray, max_size: int | None = None, consume: bool = False
) -> dict[str, Any]:
    """`framing.unpack_message`, except that a `weights` field holding an array of
    byte-integers (legacy weights, as the 2.1.1 client sends them) comes out as `bytes`,
    decoded with numpy instead of a Python int per byte, as a `ByteArray`.
    `weights.decode_weights` treats both forms alike, so the decoded message is the same.

    `consume`: the caller gives the frame up; a `bytearray` frame then has its weights decoded
    in place (`decode_byte_array`), the `ByteArray` being a view of it, and its content is
    unspecified afterwards (it is unchanged when the fast path leaves it to the reference
    decoder or refuses it)."""
    if len(frame) < FAST_FRAME_BYTES or (max_size is not None and len(frame) > max_size):
        return unpack_message(frame, max_size)
    data = np.frombuffer(frame, dtype=np.uint8)
    try:
        found = _weights_array(frame, data, consume and isinstance(frame, bytearray))
    except Unhandled:
        found = None
    if found is None:
        return unpack_message(frame, max_size)
    start, end, payload = found
    # The rest of the frame, with nil in place of the array (which counted as one container).
    message = unpack_message(
        frame[:start] + NIL + frame[end:], None, max_containers=MAX_CONTAINERS - 1
    )
    message["weights"] = ByteArray(payload)
    return message


def _weights_array(
    frame: bytes | bytearray, data: U8, in_place: bool = False
) -> tuple[int, int, U8] | None:
    """(start, end, bytes) of the only `weights` array of byte-integers in the frame's top map;
    None when the frame is not a small map of short string keys with exactly one such field.
    `in_place`: see `decode_byte_array`; the array is restored when the frame turns out unfit
    for the fast path after it was decoded."""
    header = map_header(data, 0)
    if header is None or header[0] > MAX_FRAME_KEYS:
        return None
    count, pos = header
    found: tuple[int, int, U8] | None = None
    try:
        for _ in range(count):
            if pos >= data.size or not 0xA0 <= int(data[pos]) <= 0xBF:
                break  # a key that is not a short string
            key_end = pos + 1 + (int(data[pos]) & 0x1F)
            key = frame[pos + 1 : key_end]
            if key == WEIGHTS_KEY:
                if found is not None:
                    break  # a repeated key: the reference decoder keeps the last one
                payload, end = decode_byte_array(data, key_end, in_place)
                found = (key_end, end, payload)
                pos = end
            else:
                pos = _skip(frame, key_end)
        else:
            return found
    except BaseException:
        _forget(data, found, in_place)
        raise
    _forget(data, found, in_place)
    return None


def _forget(data: U8, found: tuple[int, int, U8] | None, in_place: bool) -> None:
    """Give up a weights array decoded in place: its elements are written back as they were."""
    if in_place and found is not None:
        start, _, payload = found
        header = array_header(data, start)
        assert header is not None  # the array was decoded from there; its header is untouched
        _restore(data, header[1], payload)


def _skip(frame: bytes | bytearray, pos: int) -> int:
    """The position after the msgpack object at `pos` (without building it).

    Fed from a memoryview `SKIP_READ` bytes at a time, growing: a `BytesIO` would copy a frame
    that is not `bytes` whole (the WebSocket layer hands big frames over as a `bytearray`)."""
    view = memoryview(frame)
    unpacker = msgpack.Unpacker(max_buffer_size=max(1, len(frame)))
    fed, step = pos, SKIP_READ
    while True:
        end = min(len(view), fed + step)
        unpacker.feed(view[fed:end])
        fed, step = end, step * 2
        try:
            unpacker.skip()
        except msgpack.OutOfData:
            if fed >= len(view):
                raise Unhandled("a truncated value") from None
            continue
        except Exception:
            raise Unhandled("an undecodable value") from None
        return pos + int(unpacker.tell())


def pack_legacy_weights(weights: Sequence[npt.NDArray[Any]]) -> bytes:
    """The `weights` field of a latestServerRound answer for legacy clients: an array of
    byte-integers holding msgpack `[{shape, data}, ...]`, built with numpy; the same bytes as
    `encode_byte_array(encode_payload(weights, single=True))`.

    The numbers go out as msgpack float32: the server's model is float32, so the 2.1.1 client
    (msgpack-lite) decodes exactly the numbers float64 would give, from 5 bytes per parameter
    instead of 9 (about 7.5 instead of 13.5 bytes per parameter on the wire, with the
    byte-integers): less to encode, keep, send and parse per round.

    The numbers' byte-integers are written in one pass (`_float32_byte_integers`), not as a
    payload that is then scanned again: 1.7 instead of 3.0 ms for 1e5 parameters.
    """
    parts: list[bytes] = []
    elements = 0
    structure = bytearray(pack_array_header(len(weights)))
    step = max(1, SCAN_BLOCK // _CELL_BYTES)
    for tensor in weights:
        values = np.asarray(tensor).reshape(-1)
        structure += pack_map_header(2) + _SHAPE_KEY
        structure += msgpack.packb([int(d) for d in tensor.shape])
        structure += _DATA_KEY + pack_array_header(int(values.size))
        parts.append(_byte_integers(np.frombuffer(structure, dtype=np.uint8)))
        elements += len(structure) + 5 * int(values.size)
        structure = bytearray()
        for start in range(0, int(values.size), step):
            parts.append(_float32_byte_integers(values[start : start + step]))
    if structure:  # no tensors: the empty list's header alone
        parts.append(_byte_integers(np.frombuffer(structure, dtype=np.uint8)))
        elements += len(structure)
    return pack_array_header(elements) + b"".join(parts)


_SHAPE_KEY = msgpack.packb("shape")
_DATA_KEY = msgpack.packb("data")
_CELLS = np.dtype([("marker", "<u2"), ("bytes", "<u8")])
"""Ten candidate bytes per number: (0xcc, 0xca), then (0xcc, byte) for each of its four bytes."""
_CELL_BYTES = 10
_SPREAD_16 = np.uint64(0x0000FFFF0000FFFF)
_SPREAD_8 = np.uint64(0x00FF00FF00FF00FF)
_MARKERS = np.uint64(0x00CC00CC00CC00CC)
_HIGH_BITS = np.uint64(0x0001000100010001)
_ALWAYS = np.uint64(0x0100010001000100)


def _float32_byte_integers(values: npt.NDArray[Any]) -> bytes:
    """The byte-integers of `values` as msgpack float32s: per number 0xca (written 0xcc 0xca)
    and its four big-endian bytes, each after a 0xcc when it is 128 or more. Each number's
    bytes are spread into 16-bit lanes of a uint64 (byte j in lane j), giving its ten candidate
    bytes and which to keep with a few whole-array operations; one compaction keeps them."""
    with np.errstate(over="ignore"):  # float64 beyond float32 range: Inf, as msgpack
        big_endian = values.astype(">f4")
    lanes = big_endian.view("<u4").astype(np.uint64)  # first byte lowest
    lanes = (lanes | (lanes << np.uint64(16))) & _SPREAD_16
    lanes = (lanes | (lanes << np.uint64(8))) & _SPREAD_8
    cells = np.empty(lanes.size, _CELLS)
    cells["marker"] = 0xCACC  # little-endian: 0xcc, then 0xca
    cells["bytes"] = (lanes << np.uint64(8)) | _MARKERS
    keep = np.empty(lanes.size, _CELLS)
    keep["marker"] = 0x0101
    keep["bytes"] = ((lanes >> np.uint64(7)) & _HIGH_BITS) | _ALWAYS
    return np.compress(keep.view(np.bool_), cells.view(np.uint8)).tobytes()
