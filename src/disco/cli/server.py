"""`disco-server`: run the DISCO server (tasks API, federated aggregation, decentralized signaling).

The flags and their `DISCO_*` environment variables are one pydantic-settings model,
`ServerOptions` (flag > environment > default), so containers can be configured without a
command line; prefer `DISCO_ADMIN_TOKEN` to `--admin-token`, which other local users can read in
the process list. The options are in the units people type (MiB, seconds) and become the
server's `Settings`, whose defaults they show.
"""

from __future__ import annotations

import argparse
import logging
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, CliSettingsSource, CliToggleFlag, SettingsConfigDict

from disco import __version__
from disco.server.logs import LogFormat, configure_logging
from disco.server.runner import base_url, run_server
from disco.server.settings import EventLoop, LogLevel, MiB, Settings

log = logging.getLogger("disco.server")

_DEFAULTS = Settings()
ENV_PREFIX = "DISCO_"


class ServerOptions(BaseSettings):
    """Every `disco-server` option; `--max-body-mb` is also `DISCO_MAX_BODY_MB`, and so on."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_ignore_empty=True, frozen=True, extra="ignore"
    )

    host: str = Field(
        default=_DEFAULTS.host, description="interface to listen on (0.0.0.0 for every interface)"
    )
    port: int = Field(
        default=_DEFAULTS.port, ge=0, le=65535, description="TCP port, 0 for any free port"
    )
    data_dir: Path = Field(
        default=_DEFAULTS.data_dir, description="where tasks and their models are persisted"
    )
    tasks_dir: Path | None = Field(
        default=_DEFAULTS.tasks_dir,
        description="extra tasks to load at start-up: one folder per task holding task.json, "
        "model.json and its weight files",
    )
    log_level: LogLevel = Field(default=_DEFAULTS.log_level, description="log verbosity")
    log_format: LogFormat = Field(
        default=_DEFAULTS.log_format,
        description="text, or json: one JSON object per line with task, client and round fields",
    )
    ssl_certfile: Path | None = Field(
        default=_DEFAULTS.ssl_certfile,
        description="serve https:// and wss:// with this PEM certificate chain",
    )
    ssl_keyfile: Path | None = Field(
        default=_DEFAULTS.ssl_keyfile,
        description="the certificate's PEM private key, unless the certificate file holds it",
    )
    admin_token: str | None = Field(
        default=_DEFAULTS.admin_token,
        min_length=1,
        repr=False,
        description="require 'Authorization: Bearer <token>' (or X-Admin-Token) to create "
        f"tasks (none: anyone may); prefer the variable {ENV_PREFIX}ADMIN_TOKEN: flags are "
        "visible to other users",
    )
    max_body_mb: float = Field(
        default=_DEFAULTS.max_body_bytes / MiB, gt=0, description="largest HTTP request body, MiB"
    )
    max_frame_mb: float = Field(
        default=_DEFAULTS.max_frame_bytes / MiB, gt=0, description="largest WebSocket frame, MiB"
    )
    round_deadline: float = Field(
        default=_DEFAULTS.round_deadline_s,
        gt=0,
        description="seconds a federated round waits after reaching its quorum before aggregating",
    )
    readiness_deadline: float = Field(
        default=_DEFAULTS.readiness_deadline_s,
        gt=0,
        description="seconds a decentralized round waits for more ready peers once the minimum "
        "is ready",
    )
    ws_ping_interval: float | None = Field(
        default=_DEFAULTS.ws_ping_interval_s,
        gt=0,
        description="seconds between WebSocket keepalive pings; a client silent past the ping "
        "timeout is dropped",
    )
    ws_ping_timeout: float | None = Field(
        default=_DEFAULTS.ws_ping_timeout_s,
        gt=0,
        description="seconds to wait for a pong before dropping a connection",
    )
    upload_resume: float = Field(
        default=_DEFAULTS.upload_resume_s,
        ge=0,
        description="seconds a chunked upload cut short by a lost connection is kept for its "
        "client to resume (0: never kept)",
    )
    resumable_uploads: int = Field(
        default=_DEFAULTS.resumable_uploads,
        ge=0,
        description="interrupted uploads kept per task at most (each holds up to one model's "
        "float32 size on disk)",
    )
    ws_receive_budget_mb: float = Field(
        default=_DEFAULTS.ws_receive_budget_bytes / MiB,
        gt=0,
        description="MiB that incoming WebSocket frames over 256 KiB may hold at once, server-wide;"
        " a frame that does not fit waits (its connection is not read) until earlier ones are"
        " done with; a bigger frame is read alone",
    )
    ws_min_receive_rate: float = Field(
        default=_DEFAULTS.ws_min_receive_rate / 1024,
        gt=0,
        description="KiB/s: a frame over 256 KiB must arrive within max(10 s, its size / this"
        " rate) once its turn comes, or the connection is closed with 1008",
    )
    max_connections_per_ip: int | None = Field(
        default=_DEFAULTS.max_connections_per_ip,
        ge=1,
        description="HTTP requests in progress plus open WebSockets one address may hold "
        "(none: no cap); over it: 429 / close 1008",
    )
    requests_per_ip: float | None = Field(
        default=_DEFAULTS.requests_per_ip_per_s,
        gt=0,
        description="new requests and WebSockets per second one address may open, sustained "
        "(none: no cap); over it: 429 / close 1008",
    )
    request_burst_per_ip: int = Field(
        default=_DEFAULTS.request_burst_per_ip,
        ge=1,
        description="requests one address may open at once above --requests-per-ip",
    )
    keep_alive_timeout: int = Field(
        default=_DEFAULTS.keep_alive_timeout_s,
        ge=1,
        description="seconds an idle HTTP keep-alive connection is kept open",
    )
    request_header_timeout: float = Field(
        default=_DEFAULTS.request_header_timeout_s,
        gt=0,
        description="seconds a request's headers may take to arrive before a 408 and close",
    )
    max_connections: int | None = Field(
        default=_DEFAULTS.max_connections,
        ge=1,
        description="connections the server holds at once (none: no cap); over it: 503",
    )
    event_loop: EventLoop = Field(
        default=_DEFAULTS.event_loop,
        description="event loop: asyncio (the standard library's), uvloop (needs "
        "'pip install uvloop'), or auto: uvloop when installed",
    )
    no_default_tasks: CliToggleFlag[bool] = Field(
        default=not _DEFAULTS.load_default_tasks,
        description="do not add the built-in tasks (titanic, mnist, cifar10)",
    )

    def settings(self) -> Settings:
        """The server settings these options stand for."""
        return Settings(
            host=self.host,
            port=self.port,
            data_dir=self.data_dir,
            tasks_dir=self.tasks_dir,
            log_level=self.log_level,
            log_format=self.log_format,
            admin_token=self.admin_token,
            ssl_certfile=self.ssl_certfile,
            ssl_keyfile=self.ssl_keyfile,
            max_body_bytes=max(1, round(self.max_body_mb * MiB)),
            max_frame_bytes=max(1, round(self.max_frame_mb * MiB)),
            round_deadline_s=self.round_deadline,
            readiness_deadline_s=self.readiness_deadline,
            upload_resume_s=self.upload_resume,
            resumable_uploads=self.resumable_uploads,
            ws_ping_interval_s=self.ws_ping_interval,
            ws_ping_timeout_s=self.ws_ping_timeout,
            ws_receive_budget_bytes=max(1, round(self.ws_receive_budget_mb * MiB)),
            ws_min_receive_rate=self.ws_min_receive_rate * 1024,
            load_default_tasks=not self.no_default_tasks,
            max_connections_per_ip=self.max_connections_per_ip,
            requests_per_ip_per_s=self.requests_per_ip,
            request_burst_per_ip=self.request_burst_per_ip,
            keep_alive_timeout_s=self.keep_alive_timeout,
            request_header_timeout_s=self.request_header_timeout,
            max_connections=self.max_connections,
            event_loop=self.event_loop,
        )


def _command_line() -> tuple[argparse.ArgumentParser, CliSettingsSource[Any]]:
    """The parser (with `--version`) and the pydantic-settings source that fills it."""
    parser = argparse.ArgumentParser(
        prog="disco-server",
        description="Run the DISCO server: the tasks API (HTTP), federated learning and "
        "decentralized signaling (WebSocket).",
        epilog=f"Every option can also be set by the environment variable {ENV_PREFIX}<OPTION> "
        f"(e.g. {ENV_PREFIX}MAX_BODY_MB=64, {ENV_PREFIX}NO_DEFAULT_TASKS=1); "
        "a flag wins over the environment.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    source: CliSettingsSource[Any] = CliSettingsSource(
        ServerOptions,
        root_parser=parser,
        cli_kebab_case=True,
        cli_hide_none_type=True,
        cli_avoid_json=True,
    )
    return parser, source


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `disco-server` (for its help text)."""
    return _command_line()[0]


def _problems(error: ValidationError) -> str:
    """`--flag / DISCO_FLAG: message` for each invalid option."""
    problems = []
    for item in error.errors(include_url=False):
        if not item["loc"]:  # a rule between options (e.g. a key without its certificate)
            problems.append(str(item["msg"]))
            continue
        name = str(item["loc"][0])
        flag = f"--{name.replace('_', '-')} / {ENV_PREFIX}{name.upper()}"
        problems.append(f"{flag}: {item['msg']}")
    return "; ".join(problems)


def tls_problem(certfile: Path, keyfile: Path | None) -> str | None:
    """Why this certificate and key cannot serve TLS (missing file, bad PEM, key that does not
    match), or None: said in one line at start-up rather than in a traceback from uvicorn."""
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile, keyfile)
    except FileNotFoundError as error:
        return f"TLS: no such file: {error.filename}"
    except (ssl.SSLError, OSError) as error:
        return f"TLS: cannot use certificate {certfile} and key {keyfile or certfile}: {error}"
    return None


def load_settings(argv: Sequence[str] | None = None) -> Settings:
    """Settings from flags (`argv`, default the process's) and `DISCO_*` environment variables.

    Bad values (a TLS certificate that cannot serve included) end the process with a usage
    error (exit status 2), as argparse does.
    """
    parser, source = _command_line()
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        settings = ServerOptions(_cli_settings_source=source(args=args)).settings()
    except ValidationError as error:
        parser.error(_problems(error))
    if settings.ssl_certfile is not None:
        problem = tls_problem(settings.ssl_certfile, settings.ssl_keyfile)
        if problem is not None:
            parser.error(problem)
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags and environment, then serve until interrupted; returns the exit status."""
    settings = load_settings(argv)
    configure_logging(settings.log_level, settings.log_format)
    log.info(
        "disco-server %s starting on %s (data dir %s%s, default tasks %s, admin token %s, "
        "max body %.4g MiB, max frame %.4g MiB, round deadline %gs, event loop %s)",
        __version__,
        base_url(settings.host, settings.port, settings.tls),
        settings.data_dir.resolve(),
        f", tasks dir {settings.tasks_dir.resolve()}" if settings.tasks_dir else "",
        "on" if settings.load_default_tasks else "off",
        "required" if settings.admin_token else "not set: anyone may create tasks",
        settings.max_body_bytes / MiB,
        settings.max_frame_bytes / MiB,
        settings.round_deadline_s,
        settings.event_loop,
    )
    try:
        run_server(settings)
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its graceful shut-down
        log.info("disco-server stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
