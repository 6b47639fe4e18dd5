"""Errors raised while decoding wire data, carrying the WebSocket close code they map to."""

from enum import IntEnum

from disco.errors import DiscoError


class CloseCode(IntEnum):
    """WebSocket close codes (RFC 6455) the server uses."""

    NORMAL = 1000
    GOING_AWAY = 1001
    UNSUPPORTED_DATA = 1003  # e.g. a text frame where binary msgpack is required
    INVALID_DATA = 1007  # undecodable msgpack, wrong field types, bad weights
    POLICY_VIOLATION = 1008  # unknown task, duplicate clientID, forbidden action
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011


class ProtocolError(DiscoError, ValueError):
    """A frame or field that does not follow the protocol; the message says what is wrong."""

    def __init__(self, reason: str, close_code: CloseCode = CloseCode.INVALID_DATA) -> None:
        super().__init__(reason)
        self.reason = reason
        self.close_code = close_code
