"""Loss and accuracy per round, as a PNG (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from disco.client.simulation import SimulationRound


def plot_rounds(rows: Sequence[SimulationRound], title: str, path: str | Path) -> Path:
    """Two panels: training loss and held-out accuracy against the round number."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = [row.round for row in rows]
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axis.plot(rounds, [row.loss for row in rows], marker="o", label="training loss")
    if any(row.val_loss is not None for row in rows):
        loss_axis.plot(rounds, [row.val_loss for row in rows], marker="s", label="held-out loss")
    loss_axis.set_xlabel("round")
    loss_axis.set_ylabel("loss")
    loss_axis.legend()
    loss_axis.grid(alpha=0.3)
    accuracy_axis.plot(rounds, [row.accuracy for row in rows], marker="o", color="tab:green")
    accuracy_axis.set_xlabel("round")
    accuracy_axis.set_ylabel("held-out accuracy")
    accuracy_axis.set_ylim(0, 1)
    accuracy_axis.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    target = Path(path)
    figure.savefig(target, dpi=110)
    plt.close(figure)
    return target
