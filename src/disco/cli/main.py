"""`disco`: list a server's tasks, train as one participant, or simulate many.

    disco tasks --server URL
    disco tasks create --server URL --model pkg.module:make_model|FOLDER [--settings FILE] ...
    disco train --server URL --task ID --data PATH [--scheme federated|decentralized] [--secure]
    disco evaluate --task ID --data PATH [--labels FILE] [--model DIR] [--plot PNG]
    disco predict --task ID --data PATH --output predictions.csv [--model DIR]
    disco tokens create|list|revoke --task ID [--label TEXT] [--id TOKEN_ID]   (admin)
    disco simulate --task ID --clients N --scheme federated|decentralized [--secure] [--rounds R]
                   [--data PATH] [--split iid|dirichlet:ALPHA] [--server URL] [--engine local|ray]

Errors a user can cause (unreachable server, unknown task, bad data) print one line on stderr
and exit 1 (2 for contradictory options); Ctrl-C leaves the task (connections closed) and exits
130, SIGTERM does the same and exits 143. `--verbose` logs protocol details and shows
tracebacks of unexpected errors.
"""

from __future__ import annotations

import argparse
import gc
import logging
import math
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import NoReturn

from disco.errors import DiscoError

DEFAULT_SERVER = "http://127.0.0.1:8080"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not >= 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def _fraction(text: str) -> float:
    value = _positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"{text} is not in (0, 1)")
    return value


def _split(text: str) -> str:
    try:
        from disco.simulation.splits import parse_split
    except ModuleNotFoundError:
        return text  # the client is not installed: `main` says what to install
    try:
        parse_split(text)
    except DiscoError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _add_server(
    parser: argparse.ArgumentParser,
    default: str | None = DEFAULT_SERVER,
    tls: bool = True,
    token: bool = True,
) -> None:
    help_text = f"server URL (default {default})" if default else "server URL"
    parser.add_argument("--server", default=default, help=help_text)
    if not tls:
        return
    parser.add_argument(
        "--ca-file",
        type=Path,
        help="PEM CA certificates to verify an https:// server with (default: the system's)",
    )
    if not token:
        return
    parser.add_argument(
        "--token",
        help="participant token for a task that requires enrollment (default: $DISCO_TOKEN; "
        "prefer the variable: flags are visible to other users)",
    )


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--missing",
        choices=["error", "drop", "mean"],
        default="error",
        help="empty CSV cells: refuse (default), drop the row, or use the column mean",
    )
    parser.add_argument(
        "--resize",
        action="store_true",
        help="resize images of another size to the task's (default: refuse them)",
    )
    parser.add_argument(
        "--loopback-only",
        action="store_true",
        help="decentralized: WebRTC between peers on this machine only (127.0.0.1)",
    )
    parser.add_argument(
        "--round-timeout",
        type=_positive_float,
        default=120.0,
        help="seconds to wait for a round's aggregate before going on alone (120)",
    )
    parser.add_argument("--seed", type=int, default=0, help="shuffling seed (0)")


def build_parser() -> argparse.ArgumentParser:
    """The `disco` argument parser (its sub-commands: tasks, train, simulate)."""
    parser = argparse.ArgumentParser(
        prog="disco", description="Collaborative learning with a DISCO server, from Python."
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log details, show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    tasks = commands.add_parser("tasks", help="list the tasks a server offers (or create one)")
    _add_server(tasks)
    task_commands = tasks.add_subparsers(dest="tasks_command", metavar="ACTION")
    from disco.cli.create import add_create_parser

    add_create_parser(task_commands, _add_server)

    train = commands.add_parser("train", help="join a task as one participant with local data")
    _add_server(train)
    train.add_argument("--task", required=True, help="task ID (see `disco tasks`)")
    train.add_argument("--data", required=True, help="CSV file (tabular) or image folder")
    train.add_argument(
        "--labels",
        metavar="FILE",
        help="images: a CSV of file_name,label rows for the images in --data "
        "(default: a sub-folder per label)",
    )
    train.add_argument(
        "--scheme", choices=["federated", "decentralized"], help="default: the task's"
    )
    train.add_argument(
        "--secure", action="store_true",
        help="secure aggregation (decentralized only; a federated task aggregates securely "
        "when its aggregationStrategy is 'secure')",
    )
    train.add_argument("--epochs", type=_positive_int, help="local epochs (default: the task's)")
    train.add_argument(
        "--rounds", type=_positive_int, help="number of communication rounds instead of epochs"
    )
    train.add_argument(
        "--save-model",
        metavar="DIR",
        help="write the final model (TF.js layers files) into DIR, for disco evaluate/predict",
    )
    train.add_argument(
        "--model-path",
        action="append",
        default=[],
        metavar="DIR",
        help="PyTorch-only tasks: folder to import the model factory from (repeatable)",
    )
    _add_data_options(train)

    from disco.cli.evaluate import add_parsers

    add_parsers(commands, _add_server)

    from disco.cli.tokens import add_tokens_parser

    add_tokens_parser(commands, lambda parser: _add_server(parser, token=False))

    simulate = commands.add_parser("simulate", help="run N participants on this machine")
    simulate.add_argument("--task", required=True, help="task ID")
    simulate.add_argument(
        "--clients", type=_positive_int, required=True, help="number of participants"
    )
    simulate.add_argument("--scheme", choices=["federated", "decentralized"], default="federated")
    simulate.add_argument(
        "--secure", action="store_true",
        help="secure aggregation (decentralized only; a federated task aggregates securely "
        "when its aggregationStrategy is 'secure')",
    )
    simulate.add_argument(
        "--rounds", type=_positive_int, default=10, help="communication rounds (10)"
    )
    simulate.add_argument("--data", help="CSV file or image folder (default: built-in data)")
    simulate.add_argument(
        "--split", type=_split, default="iid", help="iid or dirichlet:ALPHA (default iid)"
    )
    _add_server(simulate, default=None, tls=False)
    simulate.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="participants as asyncio tasks here (local) or as Ray actors",
    )
    simulate.add_argument("--ray-address", help="Ray cluster address (default: a local Ray)")
    simulate.add_argument(
        "--holdout",
        type=_fraction,
        default=0.2,
        help="fraction of the data held out for evaluation (0.2)",
    )
    simulate.add_argument(
        "--output",
        default="disco-simulation",
        help="prefix of the JSON log and PNG plot (disco-simulation)",
    )
    _add_data_options(simulate)
    return parser


def _configure_logging(verbose: bool) -> None:
    """Warnings (everything of ours with --verbose) on stderr, above any live progress bar."""
    from disco.cli.commands import err

    handler: logging.Handler
    if err.is_interactive:
        from rich.logging import RichHandler

        handler = RichHandler(console=err, show_time=False, show_path=False)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    if verbose:
        logging.getLogger("disco").setLevel(logging.DEBUG)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _fail(message: str, status: int = 1) -> int:
    print(f"disco: error: {_one_line(message)}", file=sys.stderr)
    return status


class _Sigterm:
    """SIGTERM handled like Ctrl-C (the task is left cleanly), remembered for the message."""

    received = False

    @classmethod
    def handle(cls, signum: int, frame: FrameType | None) -> None:
        cls.received = True
        # The current SIGINT handler: asyncio's (cancels the running command) or Python's.
        on_interrupt = signal.getsignal(signal.SIGINT)
        if not callable(on_interrupt):
            raise KeyboardInterrupt
        on_interrupt(signal.SIGINT, frame)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `disco` command; SIGTERM leaves a task as Ctrl-C does (exit 143 instead of 130)."""
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _Sigterm.handle) if in_main_thread else None
    _Sigterm.received = False
    try:
        return _main(argv)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from disco.cli import commands
    except ModuleNotFoundError as missing:  # `pip install disco` without the client extra
        if (missing.name or "").partition(".")[0] == "disco":
            raise
        return _fail(
            f"disco {args.command} needs the Python client: pip install 'disco[client]' "
            f"(module {missing.name!r} is missing)"
        )
    _configure_logging(args.verbose)
    from disco.cli.create import create_command
    from disco.cli.evaluate import evaluate_command, predict_command
    from disco.cli.tokens import tokens_command

    tasks_command = create_command if getattr(args, "tasks_command", None) else None
    run: Callable[[argparse.Namespace], int] = {
        "tasks": tasks_command or commands.tasks_command,
        "train": commands.train_command,
        "simulate": commands.simulate_command,
        "evaluate": evaluate_command,
        "predict": predict_command,
        "tokens": tokens_command,
    }[args.command]
    try:
        return run(args)
    except KeyboardInterrupt:
        if _Sigterm.received:
            print("disco: terminated (SIGTERM): left the task", file=sys.stderr)
            return 143
        print("disco: interrupted: left the task", file=sys.stderr)
        return 130
    except commands.UsageError as error:
        return _fail(str(error), status=2)
    except DiscoError as error:  # a failure the user can act on: its message says what
        if args.verbose:
            traceback.print_exc()
        return _fail(str(error) or type(error).__name__)
    except Exception as error:  # a bug: still one line, the traceback with --verbose
        if args.verbose:
            traceback.print_exc()
            return _fail(f"unexpected {type(error).__name__}: {error}")
        return _fail(f"unexpected {type(error).__name__}: {error} (--verbose shows details)")


def run() -> NoReturn:
    """The `disco` console command: `main()`, then an exit that skips the final garbage collection.

    By then the command's work is done and its output written. Collecting everything torch,
    aiortc and their ~2,600 modules allocated would cost about a CPU-second more (15 s on a
    loaded machine, where a finished `disco train` seemed to hang) only to free memory the OS
    takes back anyway. Frozen objects are left out of that collection; the rest of the exit
    (atexit handlers, stream flushes, thread joins) stays as usual.
    """
    status = main()
    gc.freeze()
    sys.exit(status)


if __name__ == "__main__":
    run()
