"""`disco`: list a server's tasks, train as one participant, or simulate many.

    disco tasks --server URL
    disco train --server URL --task ID --data PATH [--scheme federated|decentralized] [--secure]
    disco simulate --task ID --clients N --scheme federated|decentralized [--secure] [--rounds R]
                   [--data PATH] [--split iid|dirichlet:ALPHA] [--server URL] [--engine local|ray]

Errors a user can cause (unreachable server, unknown task, bad data) print one line and exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from disco.client.data.dataset import DataError

DEFAULT_SERVER = "http://127.0.0.1:8080"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="disco", description="Collaborative learning with a DISCO server, from Python."
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log protocol details")
    commands = parser.add_subparsers(dest="command", required=True)

    tasks = commands.add_parser("tasks", help="list the tasks a server offers")
    tasks.add_argument("--server", default=DEFAULT_SERVER, help=f"server URL ({DEFAULT_SERVER})")

    train = commands.add_parser("train", help="join a task as one participant with local data")
    train.add_argument("--server", default=DEFAULT_SERVER, help=f"server URL ({DEFAULT_SERVER})")
    train.add_argument("--task", required=True, help="task ID (see `disco tasks`)")
    train.add_argument("--data", required=True, help="CSV file (tabular) or image folder")
    train.add_argument(
        "--scheme",
        choices=["federated", "decentralized"],
        help="training scheme (default: the task's)",
    )
    train.add_argument(
        "--secure", action="store_true", help="secure aggregation among decentralized peers"
    )
    train.add_argument("--epochs", type=int, help="local epochs (default: the task's)")
    train.add_argument("--rounds", type=int, help="communication rounds instead of epochs")
    train.add_argument(
        "--missing",
        choices=["error", "drop", "mean"],
        default="error",
        help="what to do with empty CSV cells (default: error)",
    )
    train.add_argument(
        "--round-timeout",
        type=float,
        default=120.0,
        help="seconds to wait for a round's aggregate (default 120)",
    )

    simulate = commands.add_parser("simulate", help="run N participants on this machine")
    simulate.add_argument("--task", required=True, help="task ID")
    simulate.add_argument("--clients", type=int, required=True, help="number of participants")
    simulate.add_argument("--scheme", choices=["federated", "decentralized"], default="federated")
    simulate.add_argument(
        "--secure", action="store_true", help="secure aggregation (decentralized)"
    )
    simulate.add_argument("--rounds", type=int, default=10, help="communication rounds (10)")
    simulate.add_argument("--data", help="CSV file or image folder (default: built-in data)")
    simulate.add_argument("--split", default="iid", help="iid or dirichlet:ALPHA (default iid)")
    simulate.add_argument("--server", help="use this server instead of an in-process one")
    simulate.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="run participants in this process or as Ray actors",
    )
    simulate.add_argument("--ray-address", help="Ray cluster address (default: a local Ray)")
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument(
        "--holdout",
        type=float,
        default=0.2,
        help="fraction of the data held out for evaluation (0.2)",
    )
    simulate.add_argument(
        "--output",
        default="disco-simulation",
        help="prefix of the JSON log and PNG plot (disco-simulation)",
    )
    simulate.add_argument("--round-timeout", type=float, default=120.0)
    return parser


def _fail(message: str) -> int:
    print(f"disco: error: {message}", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from disco.client.federated import FederatedError
    from disco.client.model.layers import UnsupportedLayerError
    from disco.client.remote import ServerError

    try:
        if args.command == "tasks":
            from disco.cli.commands import list_tasks

            return asyncio.run(list_tasks(args.server.rstrip("/")))
        if args.command == "train":
            from disco.cli.commands import train

            return asyncio.run(train(args))
        from disco.cli.commands import simulate

        return asyncio.run(simulate(args))
    except KeyboardInterrupt:
        print("disco: interrupted, left the task", file=sys.stderr)
        return 130
    except (ServerError, DataError, FederatedError, UnsupportedLayerError) as error:
        return _fail(str(error))
    except (ValueError, OSError, TimeoutError) as error:
        return _fail(str(error) or type(error).__name__)


if __name__ == "__main__":
    sys.exit(main())
