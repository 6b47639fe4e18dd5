"""How a participant reaches its server: the base URL, the TLS trust it checks it with and the
participant token it shows.

Every HTTP request and WebSocket of the client goes through one `ServerConnection`, so an
`https://` server is checked the same way everywhere (system CAs, or the CA file given), and a
task that requires enrollment sees the token everywhere (`Authorization: Bearer`).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

from disco.client.options import OptionsError


@dataclass(frozen=True)
class ServerConnection:
    """A server's base URL (`http://` or `https://`, no trailing slash) and, for https, the CA
    certificates (PEM file) to trust instead of the system's: a private CA's, say. `token`: a
    participant token, for tasks that require enrollment (kept out of repr)."""

    url: str
    ca_file: Path | None = None
    token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        url = self.url.rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise OptionsError(f"server URL must start with http:// or https://, got {self.url!r}")
        object.__setattr__(self, "url", url)
        if self.ca_file is not None and not Path(self.ca_file).is_file():
            raise OptionsError(f"CA file not found: {self.ca_file}")
        if self.token is not None and (not self.token or any(c.isspace() for c in self.token)):
            raise OptionsError("a participant token is one word (no spaces)")

    @classmethod
    def of(cls, server: str | ServerConnection) -> ServerConnection:
        """A connection from a URL, or the connection itself."""
        return server if isinstance(server, ServerConnection) else cls(server)

    @property
    def tls(self) -> bool:
        return self.url.startswith("https://")

    def ssl_context(self) -> ssl.SSLContext | None:
        """The context https/wss connections verify the server with (None for plain http)."""
        if not self.tls:
            return None
        return ssl.create_default_context(
            cafile=str(self.ca_file) if self.ca_file is not None else None
        )

    def headers(self) -> dict[str, str]:
        """What every request shows the server: the participant token, if any."""
        return {} if self.token is None else {"Authorization": f"Bearer {self.token}"}

    def http(self, timeout_s: float = 30.0) -> httpx.AsyncClient:
        """An HTTP client for this server (close it: `async with`)."""
        context = self.ssl_context()
        return httpx.AsyncClient(
            timeout=timeout_s, verify=context if context else True, headers=self.headers()
        )

    def websocket_url(self, path: str) -> str:
        """http(s)://host:port + /path -> ws(s)://host:port/path."""
        scheme, rest = self.url.split("://", 1)
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}{path}"

    async def open_websocket(self, path: str, **options: Any) -> ClientConnection:
        """Open the WebSocket at `path` (options go to `websockets.connect`)."""
        headers = {**self.headers(), **dict(options.pop("additional_headers", None) or {})}
        return await websockets.connect(
            self.websocket_url(path),
            ssl=self.ssl_context(),
            additional_headers=headers or None,
            **options,
        )
