"""`disco-server`: run the DISCO server (tasks API, federated aggregation, decentralized signaling).

Every flag has a `DISCO_*` environment variable fallback (flag > environment > default), so
containers can be configured without a command line; prefer `DISCO_ADMIN_TOKEN` to
`--admin-token`, which other local users can read in the process list.
"""

from __future__ import annotations

import argparse
import logging
import os
import ssl
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import ValidationError

from disco import __version__
from disco.server.runner import base_url, run_server
from disco.server.settings import LOG_LEVELS, MiB, Settings

log = logging.getLogger("disco.server")

_DEFAULTS = Settings()
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def _env_flag(env: Mapping[str, str], name: str) -> bool:
    """A boolean environment variable; anything unrecognized is an error, not a silent False."""
    value = env.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name}={env[name]!r}: expected one of 1/0, true/false, yes/no, on/off")


def _mb(text: str) -> float:
    """A positive size in MiB (fractions allowed)."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of MiB, got {text!r}")
    return value


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def build_parser(env: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The argument parser; defaults come from `env` (the process environment by default).

    String defaults go through each argument's `type`, so a bad environment value is reported
    like a bad flag.
    """
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(
        prog="disco-server",
        description="Run the DISCO server: the tasks API (HTTP), federated learning and "
        "decentralized signaling (WebSocket). Every option falls back to the environment "
        "variable shown.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--host",
        default=env.get("DISCO_HOST", _DEFAULTS.host),
        help=f"interface to listen on (env DISCO_HOST; default {_DEFAULTS.host}; "
        "0.0.0.0 for every interface)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=env.get("DISCO_PORT", str(_DEFAULTS.port)),
        help=f"TCP port, 0 for any free port (env DISCO_PORT; default {_DEFAULTS.port})",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=env.get("DISCO_DATA_DIR", "./disco-data"),
        help="where tasks and their models are persisted (env DISCO_DATA_DIR; "
        "default ./disco-data)",
    )
    parser.add_argument(
        "--tasks-dir",
        type=Path,
        default=env.get("DISCO_TASKS_DIR") or None,
        help="extra tasks to load at start-up: one folder per task holding task.json, "
        "model.json and its weight files (env DISCO_TASKS_DIR)",
    )
    parser.add_argument(
        "--log-level",
        type=str.lower,
        choices=LOG_LEVELS,
        default=env.get("DISCO_LOG_LEVEL", _DEFAULTS.log_level),
        help=f"log verbosity (env DISCO_LOG_LEVEL; default {_DEFAULTS.log_level})",
    )
    parser.add_argument(
        "--ssl-certfile",
        type=Path,
        default=env.get("DISCO_SSL_CERTFILE") or None,
        help="serve https:// and wss:// with this PEM certificate chain (env DISCO_SSL_CERTFILE)",
    )
    parser.add_argument(
        "--ssl-keyfile",
        type=Path,
        default=env.get("DISCO_SSL_KEYFILE") or None,
        help="the certificate's PEM private key, unless the certificate file holds it "
        "(env DISCO_SSL_KEYFILE)",
    )
    parser.add_argument(
        "--admin-token",
        default=env.get("DISCO_ADMIN_TOKEN") or None,
        help="require 'Authorization: Bearer <token>' (or X-Admin-Token) to create tasks "
        "(env DISCO_ADMIN_TOKEN, preferred: flags are visible to other users; default: open)",
    )
    parser.add_argument(
        "--max-body-mb",
        type=_mb,
        default=env.get("DISCO_MAX_BODY_MB", str(_DEFAULTS.max_body_bytes / MiB)),
        help="largest HTTP request body, in MiB (env DISCO_MAX_BODY_MB; "
        f"default {_DEFAULTS.max_body_bytes // MiB})",
    )
    parser.add_argument(
        "--max-frame-mb",
        type=_mb,
        default=env.get("DISCO_MAX_FRAME_MB", str(_DEFAULTS.max_frame_bytes / MiB)),
        help="largest WebSocket frame, in MiB (env DISCO_MAX_FRAME_MB; "
        f"default {_DEFAULTS.max_frame_bytes // MiB})",
    )
    parser.add_argument(
        "--round-deadline",
        type=_positive_seconds,
        default=env.get("DISCO_ROUND_DEADLINE", str(_DEFAULTS.round_deadline_s)),
        help="seconds a federated round waits after reaching its quorum before aggregating "
        f"(env DISCO_ROUND_DEADLINE; default {_DEFAULTS.round_deadline_s:g})",
    )
    parser.add_argument(
        "--readiness-deadline",
        type=_positive_seconds,
        default=env.get("DISCO_READINESS_DEADLINE", str(_DEFAULTS.readiness_deadline_s)),
        help="seconds a decentralized round waits for more ready peers once the minimum is "
        f"ready (env DISCO_READINESS_DEADLINE; default {_DEFAULTS.readiness_deadline_s:g})",
    )
    parser.add_argument(
        "--ws-ping-interval",
        type=_positive_seconds,
        default=env.get("DISCO_WS_PING_INTERVAL", str(_DEFAULTS.ws_ping_interval_s)),
        help="seconds between WebSocket keepalive pings; a client silent past the ping timeout "
        f"is dropped (env DISCO_WS_PING_INTERVAL; default {_DEFAULTS.ws_ping_interval_s:g})",
    )
    parser.add_argument(
        "--ws-ping-timeout",
        type=_positive_seconds,
        default=env.get("DISCO_WS_PING_TIMEOUT", str(_DEFAULTS.ws_ping_timeout_s)),
        help="seconds to wait for a pong before dropping a connection "
        f"(env DISCO_WS_PING_TIMEOUT; default {_DEFAULTS.ws_ping_timeout_s:g})",
    )
    parser.add_argument(
        "--no-default-tasks",
        action="store_true",
        default=None,
        help="do not add the built-in tasks (titanic, mnist, cifar10) "
        "(env DISCO_NO_DEFAULT_TASKS=1)",
    )
    return parser


def settings_from_args(args: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    """Settings from parsed flags (ValueError / ValidationError on inconsistent values)."""
    no_defaults = args.no_default_tasks
    if no_defaults is None:
        no_defaults = _env_flag(env, "DISCO_NO_DEFAULT_TASKS")
    return Settings(
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        tasks_dir=args.tasks_dir,
        log_level=args.log_level,
        admin_token=args.admin_token,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
        max_body_bytes=max(1, round(args.max_body_mb * MiB)),
        max_frame_bytes=max(1, round(args.max_frame_mb * MiB)),
        round_deadline_s=args.round_deadline,
        readiness_deadline_s=args.readiness_deadline,
        ws_ping_interval_s=args.ws_ping_interval,
        ws_ping_timeout_s=args.ws_ping_timeout,
        load_default_tasks=not no_defaults,
    )


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


def _configure_logging(level: str) -> None:
    """Our loggers to stderr at `level` (uvicorn configures its own from the same level)."""
    numeric = 5 if level == "trace" else getattr(logging, level.upper())
    logging.basicConfig(
        level=numeric, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", force=True
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags and environment, then serve until interrupted; returns the exit status."""
    env = os.environ
    parser = build_parser(env)
    args = parser.parse_args(argv)
    try:
        settings = settings_from_args(args, env)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in item['loc'])}: {item['msg']}" for item in error.errors()
        )
        parser.error(problems)
    except ValueError as error:
        parser.error(str(error))
    if settings.ssl_certfile is not None:
        problem = tls_problem(settings.ssl_certfile, settings.ssl_keyfile)
        if problem is not None:
            parser.error(problem)
    _configure_logging(settings.log_level)
    log.info(
        "disco-server %s starting on %s (data dir %s%s, default tasks %s, admin token %s, "
        "max body %.4g MiB, max frame %.4g MiB, round deadline %gs)",
        __version__,
        base_url(settings.host, settings.port, settings.tls),
        settings.data_dir.resolve(),
        f", tasks dir {settings.tasks_dir.resolve()}" if settings.tasks_dir else "",
        "on" if settings.load_default_tasks else "off",
        "required" if settings.admin_token else "not set: anyone may create tasks",
        settings.max_body_bytes / MiB,
        settings.max_frame_bytes / MiB,
        settings.round_deadline_s,
    )
    try:
        run_server(settings)
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its graceful shut-down
        log.info("disco-server stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
