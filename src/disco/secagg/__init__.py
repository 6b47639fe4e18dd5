"""Federated secure aggregation that survives dropouts (SecAgg+, after Bell et al., CCS 2020).

Pure state machines for the server (`Coordinator`) and a participant (`Participant`), the
round's shared facts (`Roster`) and the key agreement / share encryption (`keys`). The modular
arithmetic (fixed point mod 2^64, AES-CTR masks, Shamir shares) lives in
`disco.aggregation.masking` and `disco.aggregation.shamir`. No I/O here: the server and the
client drive these objects over their WebSocket (docs/protocol.md).
"""

from .coordinator import Coordinator, RoundAborted, Stage
from .errors import SecAggError
from .keys import Curve, KeyPair
from .participant import Participant, Shares
from .roster import DEFAULT_THRESHOLD_FRACTION, PublicKeys, Roster

__all__ = [
    "DEFAULT_THRESHOLD_FRACTION",
    "Coordinator",
    "Curve",
    "KeyPair",
    "Participant",
    "PublicKeys",
    "Roster",
    "RoundAborted",
    "SecAggError",
    "Shares",
    "Stage",
]
