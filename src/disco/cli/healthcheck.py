"""`python -m disco.cli.healthcheck`: exit 0 when the local disco-server answers, else 1.

The container's HEALTHCHECK. It reads the server's address from the same `DISCO_*` environment
the server was started with (a container is configured that way) and asks `GET /` on loopback.
Kept light on imports (no FastAPI, no uvicorn): a health check runs every 30 s on a busy host.
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.request
from collections.abc import Mapping

from disco.server.settings import Settings

TIMEOUT_S = 4.0


def health_url(env: Mapping[str, str]) -> str:
    """The URL of `GET /` on this host for a server configured by the environment `env`."""
    defaults = Settings()
    host = env.get("DISCO_HOST") or defaults.host
    port = int(env.get("DISCO_PORT") or defaults.port)
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if env.get("DISCO_SSL_CERTFILE") else "http"
    return f"{scheme}://{host}:{port}/"


def check(url: str, timeout_s: float = TIMEOUT_S) -> bool:
    """True when `url` answers 200. The certificate is not verified: the check asks whether
    this host's own server is up, the name on its certificate does not matter here."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=timeout_s, context=context) as response:
            return int(response.status) == 200
    except OSError:
        return False


def main() -> int:
    url = health_url(os.environ)
    healthy = check(url)
    print(f"{url}: {'healthy' if healthy else 'not answering'}")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
