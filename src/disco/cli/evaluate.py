"""`disco evaluate` and `disco predict`: a task's model on local data.

    disco evaluate --task T --data D [--labels FILE] [--model DIR] [--plot confusion.png]
    disco predict --task T --data D --output predictions.csv [--model DIR]

The model is the server's current global model unless `--model` names a local one (a TF.js
layers folder or its model.json, e.g. from `disco train --save-model`).
"""

from __future__ import annotations

import argparse
import asyncio
import math
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

AddServer = Callable[[argparse.ArgumentParser], None]
T = TypeVar("T")


def _common(parser: argparse.ArgumentParser, add_server: AddServer) -> None:
    add_server(parser)
    parser.add_argument("--task", required=True, help="task ID (see `disco tasks`)")
    parser.add_argument(
        "--model",
        metavar="PATH",
        help="a local model (TF.js layers folder or model.json); default: the server's",
    )
    parser.add_argument(
        "--model-path",
        action="append",
        default=[],
        metavar="DIR",
        help="PyTorch-only tasks: folder to import the model factory from (repeatable)",
    )
    parser.add_argument(
        "--missing",
        choices=["error", "drop", "mean"],
        default="error",
        help="CSV rows with empty cells or a wrong number of fields: refuse (default), drop "
        "them, or fill empty cells with the column mean",
    )


def add_parsers(commands: Any, add_server: AddServer) -> None:
    """The `evaluate` and `predict` sub-commands."""
    evaluate = commands.add_parser(
        "evaluate", help="accuracy, loss, per-class precision/recall on local labelled data"
    )
    _common(evaluate, add_server)
    evaluate.add_argument("--data", required=True, help="CSV file (tabular) or image folder")
    evaluate.add_argument("--labels", metavar="FILE", help="images: a CSV of file_name,label rows")
    evaluate.add_argument(
        "--plot",
        default="confusion_matrix.png",
        help="where to save the confusion matrix PNG (confusion_matrix.png)",
    )
    predict = commands.add_parser("predict", help="predict the class of each local input")
    _common(predict, add_server)
    predict.add_argument(
        "--data", required=True, help="CSV file (input columns) or a folder of images"
    )
    predict.add_argument(
        "--output", default="predictions.csv", help="CSV to write (predictions.csv)"
    )


def _cell(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"


def _output_path(value: str, flag: str) -> Path:
    """Where a result goes; OutputError now (not after the work) if its folder is missing."""
    from disco.cli.commands import OutputError

    path = Path(value)
    if not path.parent.is_dir():
        raise OutputError(f"{flag} {value}: folder {path.parent} does not exist")
    return path


def _run(work: Coroutine[Any, Any, T]) -> T:
    """Run a client call; data errors reworded for the command line."""
    from disco.cli.commands import cli_data_error
    from disco.client.data.dataset import DataError

    try:
        return asyncio.run(work)
    except DataError as error:
        raise cli_data_error(error) from None


def evaluate_command(args: argparse.Namespace) -> int:
    """`disco evaluate`: the report as tables on stdout, the confusion matrix as a PNG."""
    from rich.table import Table

    from disco.cli.commands import out, server_of
    from disco.cli.plot import plot_confusion
    from disco.client.api import Client

    plot_path = _output_path(args.plot, "--plot")
    report = _run(
        Client(server_of(args)).evaluate_async(
            args.task,
            args.data,
            model=args.model,
            labels=args.labels,
            missing=args.missing,
            model_path=args.model_path,
        )
    )
    source = args.model or "the server's current global model"
    out.print(
        f"{args.task}: {report.samples} samples, model {source}: "
        f"accuracy {report.accuracy:.3f}, loss {report.loss:.4f}"
    )
    classes = Table(show_edge=False)
    for column in ("class", "support", "precision", "recall"):
        classes.add_column(column, justify="left" if column == "class" else "right")
    for i, name in enumerate(report.class_names):
        classes.add_row(
            name,
            str(int(report.support[i])),
            _cell(float(report.precision[i])),
            _cell(float(report.recall[i])),
        )
    out.print(classes)
    matrix = Table(title="confusion matrix (rows: true class, columns: predicted)", show_edge=False)
    matrix.add_column("true \\ predicted", no_wrap=True)
    for name in report.class_names:
        matrix.add_column(name, justify="right")
    for name, row in zip(report.class_names, report.confusion.tolist(), strict=True):
        matrix.add_row(name, *(str(count) for count in row))
    out.print(matrix)
    plot_confusion(
        report.confusion.tolist(),
        report.class_names,
        f"{args.task}: accuracy {report.accuracy:.3f} on {report.samples} samples",
        plot_path,
    )
    out.print(f"confusion matrix plot: {plot_path}")
    return 0


def predict_command(args: argparse.Namespace) -> int:
    """`disco predict`: a CSV of predictions, a summary line on stdout."""
    from disco.cli.commands import out, server_of
    from disco.client.api import Client

    output = _output_path(args.output, "--output")
    predictions = _run(
        Client(server_of(args)).predict_async(
            args.task, args.data, model=args.model, missing=args.missing, model_path=args.model_path
        )
    )
    id_column = "file" if Path(args.data).is_dir() else "line"
    predictions.write_csv(output, id_column)
    counts: dict[str, int] = {}
    for label in predictions.labels:
        counts[label] = counts.get(label, 0) + 1
    summary = ", ".join(f"{label}: {count}" for label, count in sorted(counts.items()))
    out.print(f"{len(predictions.ids)} predictions written to {output} ({summary})")
    return 0
