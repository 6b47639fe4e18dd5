"""Decentralized learning for the Python client: peers met through the server, WebRTC between them.

`DecentralizedCommunicator` is the `Communicator` that `Client.train(scheme="decentralized")`
uses; it interoperates with the real DISCO 2.1.1 JS peers (clear text and secure aggregation) and
runs a stronger, fixed-point secure aggregation when every peer of a round is a Python peer.
"""

from disco.client.decentralized.communicator import DecentralizedCommunicator, DecentralizedError
from disco.client.decentralized.rounds import RoundOutcome
from disco.client.decentralized.secure import SecureMode
from disco.client.decentralized.webrtc import PeerGone, PeerLink
from disco.protocol.peer_messages import PeerCapabilities

__all__ = [
    "DecentralizedCommunicator",
    "DecentralizedError",
    "PeerCapabilities",
    "PeerGone",
    "PeerLink",
    "RoundOutcome",
    "SecureMode",
]
