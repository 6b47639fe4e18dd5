"""How a participant reaches its server: the base URL and the TLS trust it checks it with.

Every HTTP request and WebSocket of the client goes through one `ServerConnection`, so an
`https://` server is checked the same way everywhere (system CAs, or the CA file given).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

from disco.client.options import OptionsError


@dataclass(frozen=True)
class ServerConnection:
    """A server's base URL (`http://` or `https://`, no trailing slash) and, for https, the CA
    certificates (PEM file) to trust instead of the system's: a private CA's, say."""

    url: str
    ca_file: Path | None = None

    def __post_init__(self) -> None:
        url = self.url.rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise OptionsError(f"server URL must start with http:// or https://, got {self.url!r}")
        object.__setattr__(self, "url", url)
        if self.ca_file is not None and not Path(self.ca_file).is_file():
            raise OptionsError(f"CA file not found: {self.ca_file}")

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

    def http(self, timeout_s: float = 30.0) -> httpx.AsyncClient:
        """An HTTP client for this server (close it: `async with`)."""
        context = self.ssl_context()
        return httpx.AsyncClient(timeout=timeout_s, verify=context if context else True)

    def websocket_url(self, path: str) -> str:
        """http(s)://host:port + /path -> ws(s)://host:port/path."""
        scheme, rest = self.url.split("://", 1)
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}{path}"

    async def open_websocket(self, path: str, **options: Any) -> ClientConnection:
        """Open the WebSocket at `path` (options go to `websockets.connect`)."""
        return await websockets.connect(
            self.websocket_url(path), ssl=self.ssl_context(), **options
        )
