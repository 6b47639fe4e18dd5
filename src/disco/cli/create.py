"""`disco tasks create`: publish a task from a PyTorch model (or a TF.js folder) and settings.

    disco tasks create --model mypkg.models:make_model --task-id my-task --data-type tabular \\
        --input-columns age,fare --output-columns survived [--settings task.yaml] [--torch-only]

Settings come from `--settings` (a YAML/JSON DISCO task, validated by the task schema) and the
flags, which override it. The admin token is `--admin-token` or $DISCO_ADMIN_TOKEN.
"""

from __future__ import annotations

import argparse
import asyncio
import math
from collections.abc import Callable
from typing import Any

AddServer = Callable[[argparse.ArgumentParser], None]


def _names(text: str) -> list[str]:
    names = [item.strip() for item in text.split(",") if item.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated names")
    return names


def _ints(text: str) -> list[int]:
    try:
        values = [int(item) for item in text.replace("x", ",").split(",") if item.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected integers like 3,32,32") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive integers")
    return values


def _image_size(text: str) -> tuple[int, int]:
    values = _ints(text)
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HEIGHTxWIDTH, e.g. 32x32")
    return values[0], values[1]


# flag -> (schema field name, argparse type, help)
_SETTING_FLAGS: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "--task-id": ("task_id", str, "the new task's ID"),
    "--title": ("title", str, "title shown to participants (default: the ID)"),
    "--data-type": ("data_type", str, "tabular or image"),
    "--scheme": ("scheme", str, "federated (default) or decentralized"),
    "--input-columns": ("input_columns", _names, "tabular: comma-separated input columns"),
    "--output-columns": ("output_columns", _names, "tabular: comma-separated output columns"),
    "--label-list": ("label_list", _names, "image: comma-separated class labels, in order"),
    "--epochs": ("epochs", int, "local epochs (default 10)"),
    "--batch-size": ("batch_size", int, "batch size (default 32)"),
    "--round-duration": ("round_duration", int, "batches per communication round (default 10)"),
    "--learning-rate": ("learning_rate", float, "learning rate (default: the optimizer's)"),
    "--validation-split": ("validation_split", float, "validation fraction (default 0.2)"),
    "--optimizer": ("optimizer", str, "sgd, adam (default), rmsprop, ..."),
    "--loss": ("loss", str, "categoricalCrossentropy (images) or binaryCrossentropy (tabular)"),
    "--min-participants": ("min_nb_of_participants", int, "federated quorum (default 2)"),
    "--min-ready-peers": ("minimum_ready_peers", int, "decentralized round size (default 3)"),
    "--preprocessing": ("preprocessing_functions", _names, "image: normalize,resize"),
}


def add_create_parser(actions: Any, add_server: AddServer) -> None:
    """The `create` action of `disco tasks`."""
    create = actions.add_parser(
        "create",
        help="publish a new task from a PyTorch model or a TF.js folder",
        description="Publish a new task. Settings: --settings FILE, then the flags.",
    )
    add_server(create)
    create.add_argument(
        "--model",
        required=True,
        help="'package.module:function' returning a torch.nn.Module, or a TF.js layers folder",
    )
    create.add_argument(
        "--model-path",
        action="append",
        default=[],
        metavar="DIR",
        help="folder to import the model factory from (repeatable)",
    )
    create.add_argument("--settings", help="YAML or JSON file holding a (partial) DISCO task")
    create.add_argument(
        "--torch-only",
        action="store_true",
        help="publish the module as a PyTorch-only task (any module; Python participants only)",
    )
    create.add_argument(
        "--outputs",
        choices=["logits", "probabilities"],
        default="logits",
        help="--torch-only: what the module returns (default logits)",
    )
    create.add_argument(
        "--input-shape",
        type=_ints,
        help="one sample's shape, PyTorch layout, e.g. 3,32,32 (default: from the task)",
    )
    create.add_argument("--image-size", type=_image_size, help="image: HEIGHTxWIDTH, e.g. 32x32")
    for flag, (_, kind, help_text) in _SETTING_FLAGS.items():
        create.add_argument(flag, type=kind, help=help_text)
    create.add_argument(
        "--admin-token", help="the server's admin token (default: $DISCO_ADMIN_TOKEN)"
    )


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    fields = {
        name: getattr(args, flag.lstrip("-").replace("-", "_"))
        for flag, (name, _, _) in _SETTING_FLAGS.items()
    }
    if args.image_size is not None:
        fields["image_h"], fields["image_w"] = args.image_size
    return {name: value for name, value in fields.items() if value is not None}


async def _create(args: argparse.Namespace) -> int:
    import httpx

    from disco.cli.commands import out
    from disco.client.publish import (
        admin_token,
        merge_settings,
        prepare_task,
        read_settings,
        upload_task,
    )

    server = args.server.rstrip("/")
    base = read_settings(args.settings) if args.settings else {}
    draft = await asyncio.to_thread(
        prepare_task,
        merge_settings(base, _fields(args)),
        args.model,
        torch_only=args.torch_only,
        input_shape=args.input_shape,
        outputs=args.outputs,
        model_path=args.model_path,
    )
    for note in draft.notes:
        out.print(f"note: {note}")
    async with httpx.AsyncClient(timeout=60) as http:
        created = await upload_task(http, server, draft, admin_token(args.admin_token))
    info = created.training_information
    parameters = sum(math.prod(spec.shape) for spec in draft.artifacts.weight_specs)
    kind = "PyTorch-only model" if draft.torch_only else "TF.js layers model"
    out.print(
        f"created task {created.task_id} on {server}: {kind}, {parameters:,} parameters, "
        f"{info.training_scheme or info.scheme}, {info.data_type} data"
    )
    if draft.torch_only:
        out.print(
            "Python participants train it (disco train --model-path DIR if the factory is not "
            "installed); JavaScript and browser clients see it but cannot train it"
        )
    return 0


def create_command(args: argparse.Namespace) -> int:
    """`disco tasks create`."""
    return asyncio.run(_create(args))
