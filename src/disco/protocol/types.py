"""Message type codes shared by every DISCO channel (table in docs/protocol.md, "Frames")."""

from enum import IntEnum


class MessageType(IntEnum):
    """The integer `type` field of every msgpack message."""

    CLIENT_CONNECTED = 0
    PEER_ID = 1
    SIGNAL_FOR_PEER = 2
    PEER_IS_READY = 3
    PEERS_FOR_ROUND = 4
    WEIGHTS = 5
    SHARES = 6
    PARTIAL_SUMS = 7
    POST_WEIGHTS_TO_SERVER = 8
    POST_METADATA = 9
    GET_METADATA_MAP = 10
    LATEST_SERVER_ROUND = 11
    PULL_ROUND_AND_FETCH_WEIGHTS = 12
    PULL_SERVER_STATISTICS = 13
    ROUND_STATUS = 14  # ours (server -> native clients waiting for a round); not in 2.1.1
    UPLOAD_PROGRESS = 15  # ours (native clients resuming a chunked upload); not in 2.1.1
    # federated secure aggregation, native clients only (disco.protocol.secagg)
    SECAGG_JOIN = 20
    SECAGG_ROSTER = 21
    SECAGG_SHARES = 22
    SECAGG_RELAY = 23
    SECAGG_MASKED = 24
    SECAGG_UNMASK = 25
    SECAGG_REVEAL = 26
    SECAGG_OUTCOME = 27
