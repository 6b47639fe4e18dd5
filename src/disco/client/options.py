"""Typed options of the client's entry points: `Client.train` and `DecentralizedCommunicator`.

Frozen dataclasses with keyword-only fields: a typo is a type error (and a TypeError at run
time) instead of an ignored keyword, and an impossible value fails when the options are built,
before anything connects. Vary a run with `dataclasses.replace(options, seed=1)`.

aiortc is imported only by type checkers here: a federated participant never loads WebRTC.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, get_args

from disco.aggregation.secure import DEFAULT_SCALE_BITS
from disco.client.data.tabular import Missing
from disco.errors import DiscoError
from disco.protocol.compression import Compression

if TYPE_CHECKING:
    from aiortc import RTCIceServer

    from disco.client.data.dataset import Dataset
    from disco.client.federated import StatusCallback
    from disco.client.session import BatchCallback, RoundCallback

Scheme = Literal["federated", "decentralized"]
SecureMode = Literal["auto", "native", "disco"]
"""Secure aggregation among peers: "auto" (native fixed-point secure aggregation when every
peer of the round is a Python peer offering it, else DISCO-compatible), "native" (refuse
anything else) or "disco" (always DISCO-compatible, never advertise native)."""
Route = Literal["decentralized", "deai"]
"""Signaling route: `/decentralized/{task}/{clientId}` or `/deai/{task}`."""

MAX_SCALE_BITS: Final = 30
PYTHON_CHUNK_SIZE: Final = 64 * 1024
"""Chunk size between Python peers: aiortc accepts SCTP messages of up to 256 KiB."""


class OptionsError(DiscoError, ValueError):
    """An option value that cannot work; the message names the option."""


def require_positive(name: str, value: float | None) -> None:
    """OptionsError unless `value` is None or a finite number above 0."""
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise OptionsError(f"{name} must be a positive number, got {value!r}")


def require_choice(name: str, value: object, allowed: object) -> None:
    """OptionsError unless `value` is one of the `Literal` type `allowed`."""
    choices = get_args(allowed)
    if value not in choices:
        raise OptionsError(f"{name} must be {', '.join(map(str, choices))}, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class DecentralizedOptions:
    """How a decentralized participant reaches its peers and aggregates with them.

    - `ice_servers`: STUN/TURN servers (URLs or `{urls, username, credential}`); None means
      simple-peer's public STUN servers, `[]` none;
    - `loopback_only`: gather and accept ICE candidates on 127.0.0.1 / ::1 only (peers on
      this machine: tests, simulations);
    - `secure_mode`: see `SecureMode`; `scale_bits`: fractional bits of native secure mode;
    - `max_share_value`: bound of DISCO-compatible shares (None: the task's maxShareValue);
    - `route`: the signaling route; `connect_timeout_s`: signaling connection timeout;
    - `python_chunk_size`: data-channel chunk size towards Python peers.
    """

    ice_servers: Sequence[str | Mapping[str, Any] | RTCIceServer] | None = None
    loopback_only: bool = False
    secure_mode: SecureMode = "auto"
    scale_bits: int = DEFAULT_SCALE_BITS
    max_share_value: float | None = None
    route: Route = "decentralized"
    connect_timeout_s: float = 30.0
    python_chunk_size: int = PYTHON_CHUNK_SIZE

    def __post_init__(self) -> None:
        require_choice("secure_mode", self.secure_mode, SecureMode)
        require_choice("route", self.route, Route)
        if not 0 <= self.scale_bits <= MAX_SCALE_BITS:
            raise OptionsError(f"scale_bits must be in 0..{MAX_SCALE_BITS}, got {self.scale_bits}")
        require_positive("max_share_value", self.max_share_value)
        require_positive("connect_timeout_s", self.connect_timeout_s)
        if self.python_chunk_size < 1:
            raise OptionsError(f"python_chunk_size must be positive, got {self.python_chunk_size}")


@dataclass(frozen=True, kw_only=True)
class TrainOptions:
    """How one participant trains (`Client.train`); every field has a working default.

    - `scheme`: "federated" or "decentralized" (None: the task's); `secure`: secure
      aggregation among decentralized peers (None: the task's `decentralizedSecure`);
    - `epochs` (None: the task's) or `rounds`: communication rounds of `roundDuration` batches;
    - `validation`: data evaluated after each round; `on_round` / `on_batch`: progress callbacks;
      `on_status`: federated, what the round waits for (`disco.protocol.messages.RoundStatus`);
    - `compression`: federated, send "fp16" or "int8" updates (`disco.protocol.compression`);
    - `round_timeout_s`: how long a round may wait for its aggregate before going on alone;
    - `client_id`: the id to connect with (None: a fresh one);
    - `missing`: empty CSV cells: "error", "drop" the row, or fill with the column "mean";
    - `seed`: shuffling and noise seed; `decentralized`: peer-to-peer settings;
    - `model_path`: folders to import a PyTorch-only task's model factory from;
    - `labels`: images, a CSV of `file_name,label` rows (instead of a sub-folder per label).
    """

    scheme: Scheme | None = None
    secure: bool | None = None
    epochs: int | None = None
    rounds: int | None = None
    validation: Dataset | None = None
    on_round: RoundCallback | None = None
    on_batch: BatchCallback | None = None
    on_status: StatusCallback | None = None
    compression: Compression | None = None
    round_timeout_s: float = 120.0
    client_id: str | None = None
    missing: Missing = "error"
    seed: int = 0
    decentralized: DecentralizedOptions = field(default_factory=DecentralizedOptions)
    model_path: Sequence[str | Path] = ()
    labels: str | Path | None = None

    def __post_init__(self) -> None:
        if self.scheme is not None:
            require_choice("scheme", self.scheme, Scheme)
        require_choice("missing", self.missing, Missing)
        if self.compression is not None:
            require_choice("compression", self.compression, Compression)
        for name in ("epochs", "rounds"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise OptionsError(f"{name} must be at least 1, got {value}")
        require_positive("round_timeout_s", self.round_timeout_s)
