"""One WebSocket frame = one msgpack map with an integer `type` (docs/protocol.md, "Frames").

Decoding is the server's first contact with untrusted bytes, so every failure mode of the
msgpack decoder is turned into a `ProtocolError` carrying the WebSocket close code to use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgpack

from disco.errors import DiscoError
from disco.protocol.errors import CloseCode, ProtocolError
from disco.protocol.types import MessageType

MAX_CONTAINERS = 100_000
"""Most msgpack maps + arrays accepted in one payload.

An empty map is 1 byte on the wire but ~70 bytes in Python; bounding the container count keeps
a hostile frame from turning into many times its size in memory. Real messages hold a handful
of containers (one per weight tensor at most in the native encoding).
"""

_KNOWN_TYPES = frozenset(int(t) for t in MessageType)


def pack(message: Mapping[str, Any]) -> bytes:
    """Encode one message for a binary WebSocket frame (str as msgpack str, bytes as bin)."""
    packed: bytes = msgpack.packb(message, use_bin_type=True)
    return packed


def pack_with_encoded(message: Mapping[str, Any], key: str, encoded: bytes) -> bytes:
    """`pack(message)` with the value of `key` replaced by `encoded`, an already packed msgpack
    object (a big field encoded by other means, e.g. legacy weights with numpy)."""
    parts = [pack_map_header(len(message))]
    for name, value in message.items():
        parts.append(msgpack.packb(name, use_bin_type=True))
        parts.append(encoded if name == key else msgpack.packb(value, use_bin_type=True))
    return b"".join(parts)


def _header(fix: int, count: int, wide: tuple[bytes, bytes]) -> bytes:
    if count < 16:
        return bytes([fix | count])
    if count <= 0xFFFF:
        return wide[0] + count.to_bytes(2, "big")
    return wide[1] + count.to_bytes(4, "big")


def pack_array_header(count: int) -> bytes:
    """The msgpack header of an array of `count` elements, as msgpack writes it."""
    return _header(0x90, count, (b"\xdc", b"\xdd"))


def pack_map_header(count: int) -> bytes:
    """The msgpack header of a map of `count` entries, as msgpack writes it."""
    return _header(0x80, count, (b"\xde", b"\xdf"))


class _ExtRefused(DiscoError):
    """Raised from the ext hook; turned into a ProtocolError by `unpackb_untrusted`."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _refuse_ext(code: int, data: bytes) -> Any:
    raise _ExtRefused(code)


class _ContainerBudget:
    """Counts decoded maps and arrays and stops the decoder once the budget is spent."""

    __slots__ = ("left",)

    def __init__(self, budget: int) -> None:
        self.left = budget

    def spend(self, obj: Any) -> Any:
        self.left -= 1
        if self.left < 0:
            raise _TooManyContainers
        return obj


class _TooManyContainers(DiscoError):
    pass


def unpackb_untrusted(
    data: bytes | bytearray, what: str, max_containers: int = MAX_CONTAINERS
) -> Any:
    """Decode one complete msgpack object from untrusted bytes, or raise ProtocolError (1007).

    Length limits follow the payload size (nothing can claim more elements than it has bytes),
    ext types are refused (DISCO clients never send them; msgpack timestamps, ext -1, decode to
    `msgpack.Timestamp`), and trailing or missing bytes are errors. `what` names the payload in
    error reasons, e.g. "frame" or "legacy weights".
    """
    n = len(data)
    # Every map or array takes at least one byte: a payload of at most `max_containers` bytes
    # cannot exceed the budget, so most frames skip the per-container Python call.
    counted: dict[str, Any] = {}
    if n > max_containers:
        budget = _ContainerBudget(max_containers)
        counted = {"list_hook": budget.spend, "object_hook": budget.spend}
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=False,
            use_list=True,
            ext_hook=_refuse_ext,
            **counted,
            max_str_len=n,
            max_bin_len=n,
            max_array_len=n,
            max_map_len=n // 2,
            max_ext_len=n,
        )
    except _ExtRefused as e:
        raise ProtocolError(
            f"{what} holds msgpack ext type {e.code}, which is not allowed"
        ) from None
    except _TooManyContainers:
        raise ProtocolError(
            f"{what} holds more than {max_containers} msgpack maps and arrays"
        ) from None
    except msgpack.ExtraData:
        raise ProtocolError(f"{what} has trailing bytes after the msgpack object") from None
    except msgpack.StackError:
        raise ProtocolError(f"{what} nests msgpack containers too deeply") from None
    except msgpack.FormatError:
        raise ProtocolError(f"{what} is not valid msgpack (reserved byte)") from None
    except UnicodeDecodeError:
        raise ProtocolError(f"{what} holds a msgpack str that is not valid UTF-8") from None
    except TypeError as e:  # unhashable map key (a map or array used as a key)
        raise ProtocolError(f"{what} is not decodable msgpack: {e}") from None
    except ValueError as e:  # truncated input, a length over the limits, bad timestamp
        raise ProtocolError(f"{what} is not decodable msgpack: {e}") from None


def unpack_message(
    frame: bytes | bytearray, max_size: int | None = None, max_containers: int = MAX_CONTAINERS
) -> dict[str, Any]:
    """Decode and sanity-check one frame: a msgpack map with a known integer `type`.

    Raises ProtocolError with close code 1009 when the frame is over `max_size` bytes and 1007
    for anything else that is wrong. Only the envelope is checked here; per-channel field
    validation lives in `disco.protocol.messages`.
    """
    if max_size is not None and len(frame) > max_size:
        raise ProtocolError(
            f"frame of {len(frame)} bytes exceeds the limit of {max_size} bytes",
            CloseCode.MESSAGE_TOO_BIG,
        )
    message = unpackb_untrusted(frame, "frame", max_containers)
    if not isinstance(message, dict):
        raise ProtocolError(
            f"message must be a msgpack map, got {msgpack_kind(message)}",
        )
    for key in message:
        if not isinstance(key, str):
            raise ProtocolError(f"message map keys must be strings, got {msgpack_kind(key)}")
    code = message.get("type")
    if type(code) is not int:  # bool is an int subclass but not a type code
        raise ProtocolError("message has no integer 'type' field")
    if code not in _KNOWN_TYPES:
        raise ProtocolError(f"unknown message type {code}")
    return message


def msgpack_kind(value: object) -> str:
    """Name a decoded value by its msgpack kind, for error reasons a client author understands."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, bytes):
        return "bin"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "map"
    return type(value).__name__
