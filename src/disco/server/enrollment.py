"""Participant tokens of tasks that require enrollment: issued, checked, revoked.

A token is 256 random bits (URL-safe text, so it also fits in a path segment). The server keeps
only its SHA-256 digest, in `<data dir>/enrollment.json` (written atomically), with a short
public id the admin lists and revokes it by. A presented token is compared with every stored
digest of the task in constant time. A clientID belongs to the first token that used it while
the server runs: another token presenting it is refused (no impersonation).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from disco.errors import DiscoError
from disco.tasks.atomic import atomic_write_json

TOKEN_BYTES = 32
ID_BYTES = 6
FILE_NAME = "enrollment.json"


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
            Verdict.MISSING: "this task requires enrollment: a participant token is needed",
            Verdict.UNKNOWN: "participant token not recognized",
            Verdict.REVOKED: "participant token revoked",
            Verdict.OTHER_TASK: "participant token is for another task",
        }[self]


def digest_of(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenStore:
    """The tokens of every task, mirrored on disk; thread-safe."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / FILE_NAME
        self._lock = threading.Lock()
        self._records: dict[str, TokenRecord] = {}
        self._clients: dict[tuple[str, str], str] = {}  # (task, clientID) -> token_id

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
        atomic_write_json(self.path, {"tokens": [asdict(r) for r in self._records.values()]})

    def create(self, task_id: str, label: str = "") -> tuple[TokenRecord, str]:
        """A new token for `task_id`: its record and the token itself (shown once, not kept)."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
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
        holds it already."""
        with self._lock:
            holder = self._clients.setdefault((task_id, client_id), token_id)
        return holder == token_id
