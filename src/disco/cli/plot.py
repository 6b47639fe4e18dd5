"""Loss and accuracy per round, as a PNG (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from disco.simulation.results import SimulationRound


def plot_rounds(
    rows: Sequence[SimulationRound],
    title: str,
    path: str | Path,
    majority_rate: float | None = None,
) -> Path:
    """Two panels: training and held-out loss, and held-out accuracy, against the round.

    The majority-class rate, when given, is drawn as the baseline a useful model must beat.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display needed (servers, CI)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    rounds = [row.round for row in rows]
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 4))
    try:
        loss_axis.plot(rounds, [row.loss for row in rows], marker="o", label="training loss")
        if any(row.val_loss is not None for row in rows):
            loss_axis.plot(
                rounds,
                [float("nan") if row.val_loss is None else row.val_loss for row in rows],
                marker="s",
                label="held-out loss",
            )
        loss_axis.set_xlabel("round")
        loss_axis.set_ylabel("loss")
        loss_axis.legend()
        accuracy_axis.plot(
            rounds,
            [float("nan") if row.accuracy is None else row.accuracy for row in rows],
            marker="o",
            color="tab:green",
            label="held-out accuracy",
        )
        if majority_rate is not None:
            accuracy_axis.axhline(
                majority_rate,
                color="tab:gray",
                linestyle="--",
                label=f"majority class ({majority_rate:.2f})",
            )
        accuracy_axis.set_xlabel("round")
        accuracy_axis.set_ylabel("held-out accuracy")
        accuracy_axis.set_ylim(0, 1)
        accuracy_axis.legend(loc="best")
        for axis in (loss_axis, accuracy_axis):
            axis.grid(alpha=0.3)
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        figure.suptitle(title)
        figure.tight_layout()
        target = Path(path)
        figure.savefig(target, dpi=110)
    finally:
        plt.close(figure)
    return target


def plot_confusion(
    confusion: Sequence[Sequence[int]], class_names: Sequence[str], title: str, path: str | Path
) -> Path:
    """The confusion matrix as a heat map, counts written in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(class_names)
    size = min(12.0, 2.5 + 0.6 * n)
    figure, axis = plt.subplots(figsize=(size, size))
    try:
        image = axis.imshow(confusion, cmap="Blues")
        figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
        axis.set_xticks(range(n), class_names, rotation=45, ha="right")
        axis.set_yticks(range(n), class_names)
        axis.set_xlabel("predicted class")
        axis.set_ylabel("true class")
        axis.set_title(title)
        peak = max((max(row) for row in confusion), default=0)
        for i, row in enumerate(confusion):
            for j, count in enumerate(row):
                color = "white" if peak and count > peak / 2 else "black"
                axis.text(j, i, str(count), ha="center", va="center", color=color)
        figure.tight_layout()
        target = Path(path)
        figure.savefig(target, dpi=100)
    finally:
        plt.close(figure)
    return target
