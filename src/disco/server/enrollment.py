"""Participant tokens of tasks that require enrollment: issued, checked, revoked.

A task requires enrollment when its `trainingInformation.requiresEnrollment` is true (off by
default: DISCO's clients work unchanged on open tasks). Then every route that reveals or changes
the task needs a participant token of that task (`Enrollment.grant`).

A token is 256 random bits (URL-safe text, so it also fits in a path segment). The server keeps
only its SHA-256 digest, in `<data dir>/enrollment.json` (written atomically, owner-only), with a
short public id the admin lists and revokes it by. A presented token is compared with every stored
digest in constant time. A clientID belongs to the first token that used it on a task while the
server runs: another token presenting it is refused (no impersonation, no posting for another
participant). Revoking a token closes its live connections (`Enrollment.hold` registers them).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Final

from disco.errors import DiscoError
from disco.protocol.errors import CloseCode
from disco.tasks.atomic import atomic_write_json
from disco.tasks.store import TaskNotFoundError, TaskStore

log = logging.getLogger("disco.server.enrollment")

TOKEN_BYTES: Final = 32
ID_BYTES: Final = 6
FILE_NAME: Final = "enrollment.json"
MAX_CLIENTS_PER_TOKEN: Final = 4096
"""ClientIDs remembered per token (the 2.1.1 JS client makes a new one per session); beyond it
the token's oldest claim is forgotten, so memory stays bounded whatever a participant does."""
MAX_LABEL_CHARS: Final = 200


class EnrollmentError(DiscoError):
    """An enrollment operation that cannot be done (unknown token id, unreadable file)."""


@dataclass(frozen=True)
class TokenRecord:
    """What the server keeps of a token: never the token itself."""

    token_id: str
    task_id: str
    digest: str  # sha256 hex of the token
    created: float
    label: str = ""
    revoked: bool = False

    def public(self) -> dict[str, Any]:
        """The record as the admin routes show it (no digest)."""
        return {
            "tokenID": self.token_id,
            "taskID": self.task_id,
            "label": self.label,
            "created": self.created,
            "revoked": self.revoked,
        }


class Verdict(Enum):
    """The outcome of checking a presented token for a task."""

    VALID = "valid"
    MISSING = "missing"
    UNKNOWN = "unknown"
    REVOKED = "revoked"
    OTHER_TASK = "other_task"

    @property
    def reason(self) -> str:
        return {
            Verdict.VALID: "token accepted",
            Verdict.MISSING: "this task requires enrollment: a participant token is needed "
            "('Authorization: Bearer <token>' or the URL prefix /p/<token>/)",
            Verdict.UNKNOWN: "participant token not recognized",
            Verdict.REVOKED: "participant token revoked",
            Verdict.OTHER_TASK: "participant token is for another task",
        }[self]

    @property
    def status(self) -> int:
        """The HTTP status of a refusal: 401 when no usable credential came, 403 when a valid
        credential does not allow this."""
        return 403 if self is Verdict.OTHER_TASK else 401


def new_token() -> str:
    """TOKEN_BYTES random bytes as URL-safe text that does not start with "-": a token is pasted
    after `--token` on command lines, where argparse (and most parsers) would read a leading "-"
    as an option (1 token in 64 otherwise). Redrawing costs under 0.03 bits of the 256."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    while token.startswith("-"):
        token = secrets.token_urlsafe(TOKEN_BYTES)
    return token


def digest_of(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenStore:
    """The tokens of every task, mirrored on disk; thread-safe."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / FILE_NAME
        self._lock = threading.Lock()
        self._records: dict[str, TokenRecord] = {}
        self._clients: dict[tuple[str, str], str] = {}  # (task, clientID) -> token_id
        self._claims: dict[str, OrderedDict[tuple[str, str], None]] = {}  # token_id -> its claims

    def load(self) -> None:
        """Read the file if there is one (EnrollmentError if it is not ours)."""
        if not self.path.exists():
            return
        try:
            raw = json.loads(self.path.read_bytes())
            records = [TokenRecord(**item) for item in raw["tokens"]]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise EnrollmentError(f"cannot read {self.path}: {error}") from None
        with self._lock:
            self._records = {r.token_id: r for r in records}

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path, {"tokens": [asdict(r) for r in self._records.values()]})

    def create(self, task_id: str, label: str = "") -> tuple[TokenRecord, str]:
        """A new token for `task_id`: its record and the token itself (shown once, not kept)."""
        token = new_token()
        with self._lock:
            token_id = secrets.token_hex(ID_BYTES)
            while token_id in self._records:
                token_id = secrets.token_hex(ID_BYTES)
            record = TokenRecord(token_id, task_id, digest_of(token), time.time(), label)
            self._records[token_id] = record
            self._save()
        return record, token

    def tokens(self, task_id: str) -> list[TokenRecord]:
        with self._lock:
            return [r for r in self._records.values() if r.task_id == task_id]

    def revoke(self, task_id: str, token_id: str) -> TokenRecord:
        with self._lock:
            record = self._records.get(token_id)
            if record is None or record.task_id != task_id:
                raise EnrollmentError(f"task {task_id!r} has no token {token_id!r}")
            revoked = TokenRecord(**{**asdict(record), "revoked": True})
            self._records[token_id] = revoked
            self._save()
        return revoked

    def is_revoked(self, token_id: str) -> bool:
        """True when the token was revoked (or is unknown)."""
        with self._lock:
            record = self._records.get(token_id)
        return record is None or record.revoked

    def check(self, task_id: str, token: str | None) -> tuple[Verdict, TokenRecord | None]:
        """What `token` is worth for `task_id`; every stored digest is compared in constant
        time, so the answer's timing does not depend on how much of a digest matched."""
        if not token:
            return Verdict.MISSING, None
        presented = digest_of(token).encode()
        found: TokenRecord | None = None
        with self._lock:
            for record in self._records.values():
                if hmac.compare_digest(presented, record.digest.encode()):
                    found = record
        if found is None:
            return Verdict.UNKNOWN, None
        if found.task_id != task_id:
            return Verdict.OTHER_TASK, found
        if found.revoked:
            return Verdict.REVOKED, found
        return Verdict.VALID, found

    def claim_client(self, task_id: str, client_id: str, token_id: str) -> bool:
        """Bind `client_id` to `token_id` for this server's lifetime; False when another token
        holds it already. A token keeps its `MAX_CLIENTS_PER_TOKEN` newest claims."""
        key = (task_id, client_id)
        with self._lock:
            holder = self._clients.setdefault(key, token_id)
            if holder != token_id:
                return False
            claims = self._claims.setdefault(token_id, OrderedDict())
            claims[key] = None
            claims.move_to_end(key)
            while len(claims) > MAX_CLIENTS_PER_TOKEN:
                oldest, _ = claims.popitem(last=False)
                del self._clients[oldest]
        return True


Close = Callable[[int, str], None]
"""Asks one live connection to close with a WebSocket code and reason (HTTP streams ignore both)."""


class AccessRefused(DiscoError):
    """A request or connection refused for want of a valid participant token."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.close_code = int(CloseCode.POLICY_VIOLATION)


@dataclass(frozen=True)
class Grant:
    """Why a request may touch a task: it is open, the admin asks, or a participant's token."""

    task_id: str
    record: TokenRecord | None = None
    admin: bool = False

    @property
    def token_id(self) -> str | None:
        return None if self.record is None else self.record.token_id


REVOKED_REASON: Final = "participant token revoked"


class Enrollment:
    """Who may touch which task: the tasks' `requiresEnrollment`, the token store and the live
    connections of each token (see the module docstring). Used on the event loop; the store's
    disk writes belong in a worker thread (`create`, `revoke`)."""

    def __init__(self, tasks: TaskStore, tokens: TokenStore) -> None:
        self.tasks = tasks
        self.tokens = tokens
        self._live: dict[str, set[Close]] = {}

    def required(self, task_id: str) -> bool:
        """Whether the task needs a token; False for an unknown task (its route says 404)."""
        try:
            stored = self.tasks.get(task_id)
        except TaskNotFoundError:
            return False
        return stored.task.training_information.enrollment_required

    def grant(
        self,
        task_id: str,
        token: str | None,
        *,
        admin: bool = False,
        client_id: str | None = None,
    ) -> Grant:
        """The grant for a request on `task_id`, or AccessRefused (401/403 with the reason).

        `admin`: the request carries the admin token (read routes accept it, WebSockets do not
        pass it); `client_id`: the clientID the connection speaks for, bound to the token.
        """
        if not self.required(task_id):
            return Grant(task_id)
        if admin:
            return Grant(task_id, admin=True)
        verdict, record = self.tokens.check(task_id, token)
        if verdict is not Verdict.VALID or record is None:
            raise AccessRefused(verdict.status, verdict.reason)
        if client_id is not None and not self.tokens.claim_client(
            task_id, client_id, record.token_id
        ):
            raise AccessRefused(
                403, "this clientID belongs to another participant token: use your own"
            )
        return Grant(task_id, record)

    def visible(self, task_id: str, token: str | None, admin: bool) -> bool:
        """Whether a listing (GET /tasks, /events) shows the task to this requester: open tasks
        to everyone, an enrolled one to the admin and to its own participants."""
        try:
            self.grant(task_id, token, admin=admin)
        except AccessRefused:
            return False
        return True

    def hold(self, grant: Grant, close: Close) -> Callable[[], None]:
        """Register a live connection of `grant`'s token (revoking it calls `close`); returns
        the function that unregisters it. A token revoked meanwhile closes it at once."""
        token_id = grant.token_id
        if token_id is None:
            return _nothing
        self._live.setdefault(token_id, set()).add(close)
        if self.tokens.is_revoked(token_id):
            close(int(CloseCode.POLICY_VIOLATION), REVOKED_REASON)

        def release() -> None:
            closers = self._live.get(token_id)
            if closers is not None:
                closers.discard(close)
                if not closers:
                    del self._live[token_id]

        return release

    def live_connections(self, token_id: str) -> int:
        """Connections currently held by the token."""
        return len(self._live.get(token_id, ()))

    def closed_by_revocation(self, token_id: str) -> int:
        """Close every live connection of a revoked token (1008); how many there were."""
        closers = list(self._live.pop(token_id, ()))
        for close in closers:
            try:
                close(int(CloseCode.POLICY_VIOLATION), REVOKED_REASON)
            except Exception:  # one broken connection must not keep the others open
                log.exception("closing a connection of revoked token %s failed", token_id)
        return len(closers)


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class Gate:
    """A WebSocket's credentials, checked by its handler once the connection is accepted (so a
    refusal reaches the client as a close code and reason)."""

    enrollment: Enrollment
    token: str | None

    def admit(self, task_id: str, client_id: str | None = None) -> Grant:
        """The connection's grant on the task (the admin token does not make a participant);
        AccessRefused otherwise."""
        return self.enrollment.grant(task_id, self.token, client_id=client_id)

    def hold(self, grant: Grant, close: Close) -> Callable[[], None]:
        """`Enrollment.hold`."""
        return self.enrollment.hold(grant, close)
