"""Metadata clients post per round (postMetadata, type 9) and read back (getMetadataMap, type 10).

DISCO lets clients publish small strings keyed by (round, metadataId), one per client, and read
every client's value for a key. The server keeps them in memory only, bounded in size: when the
budget is exceeded the oldest rounds are forgotten first (a reader asking for them gets an empty
map, as for a key nobody posted). Keys are the connection's clientID from the URL, not the
message's `clientId` field, so a client cannot write under another client's name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from disco.protocol.errors import CloseCode, ProtocolError

MAX_VALUE_CHARS = 1024 * 1024
"""Longest metadata string accepted (DISCO's uses are short: counts, flags, small JSON)."""

MAX_TOTAL_CHARS = 16 * 1024 * 1024
"""Characters (values + keys) kept per task before the oldest rounds are forgotten."""

ENTRY_OVERHEAD = 64
"""Characters charged per entry on top of its strings, so empty values still cost something."""


def _cost(metadata_id: str, client_id: str, value: str) -> int:
    return len(metadata_id) + len(client_id) + len(value) + ENTRY_OVERHEAD


@dataclass
class MetadataBoard:
    """Per-task store: round -> metadataId -> clientId -> value, bounded by `max_total_chars`."""

    max_value_chars: int = MAX_VALUE_CHARS
    max_total_chars: int = MAX_TOTAL_CHARS
    _rounds: dict[int, dict[str, dict[str, str]]] = field(default_factory=dict)
    _size: int = 0

    @property
    def size(self) -> int:
        """Characters currently charged against the budget."""
        return self._size

    def put(self, round: int, metadata_id: str, client_id: str, value: str) -> None:
        """Store (or replace) one client's value; ProtocolError (1009) when it is too long."""
        if len(value) > self.max_value_chars:
            raise ProtocolError(
                f"metadata of {len(value)} characters exceeds the limit of "
                f"{self.max_value_chars}",
                CloseCode.MESSAGE_TOO_BIG,
            )
        entries = self._rounds.setdefault(round, {}).setdefault(metadata_id, {})
        previous = entries.get(client_id)
        if previous is not None:
            self._size -= _cost(metadata_id, client_id, previous)
        entries[client_id] = value
        self._size += _cost(metadata_id, client_id, value)
        self._evict(keep=round)

    def get(self, round: int, metadata_id: str) -> list[tuple[str, str]]:
        """Every client's value for (round, metadataId), in posting order of first post."""
        return list(self._rounds.get(round, {}).get(metadata_id, {}).items())

    def _evict(self, keep: int) -> None:
        """Forget whole rounds, oldest first, until the budget holds (never the round `keep`)."""
        for round in sorted(self._rounds):
            if self._size <= self.max_total_chars:
                return
            if round == keep:
                continue
            for metadata_id, entries in self._rounds.pop(round).items():
                for client_id, value in entries.items():
                    self._size -= _cost(metadata_id, client_id, value)
        if self._size > self.max_total_chars:  # the newest round alone is over budget
            self._trim_round(keep)

    def _trim_round(self, round: int) -> None:
        """Drop the oldest entries of one round until the budget holds."""
        keys = self._rounds.get(round, {})
        for metadata_id in list(keys):
            entries = keys[metadata_id]
            for client_id in list(entries):
                if self._size <= self.max_total_chars:
                    return
                self._size -= _cost(metadata_id, client_id, entries.pop(client_id))
            if not entries:
                del keys[metadata_id]
