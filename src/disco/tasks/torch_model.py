"""PyTorch-only task models, as the server and every client see them.

Such a task's `modelTopology` is `{"class_name": "TorchModule", "config": {"factory": ...}}`: its
weights are the module's named float32 tensors (a normal weights manifest and `weights.bin`), so
the server stores, serves and aggregates them like any model, but only the Python client can
build the module. The task JSON carries `torchModel` (`factory` and a human `reason`) so the
JavaScript and browser clients can show why they cannot train it, and the server refuses them
the model (in DISCO's encoding) with that reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

TORCH_MODEL_CLASS: Final = "TorchModule"
TORCH_MODEL_FIELD: Final = "torchModel"


def is_torch_topology(topology: Mapping[str, Any]) -> bool:
    """Whether a `modelTopology` describes a PyTorch-only model."""
    return topology.get("class_name") == TORCH_MODEL_CLASS


def torch_factory(topology: Mapping[str, Any]) -> str:
    """The `pkg.module:function` that builds a PyTorch-only model ('' if none)."""
    config = topology.get("config")
    return str(config.get("factory", "")) if isinstance(config, Mapping) else ""


def not_trainable_reason(task_id: str, factory: str) -> str:
    """Why JavaScript and browser clients cannot train a PyTorch-only task."""
    return (
        f"task {task_id!r} is PyTorch-only: its model is a torch.nn.Module built by "
        f"{factory or 'a Python factory'} on each participant and has no TF.js form; "
        "train it with the Python client (disco train)"
    )
