"""TF.js activation names mapped to torch functions (channel axis aware for softmax)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from disco.client.model.errors import ModelError

Activation = Callable[[torch.Tensor], torch.Tensor]


def _softmax(x: torch.Tensor) -> torch.Tensor:
    return torch.softmax(x, dim=-1)


def _hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    # TF.js: clip(0.2 * x + 0.5, 0, 1)
    return torch.clamp(0.2 * x + 0.5, 0.0, 1.0)


_ACTIVATIONS: dict[str, Activation] = {
    "linear": lambda x: x,
    "relu": torch.relu,
    "relu6": lambda x: torch.clamp(x, 0.0, 6.0),
    "sigmoid": torch.sigmoid,
    "softmax": _softmax,
    "logsoftmax": lambda x: torch.log_softmax(x, dim=-1),
    "tanh": torch.tanh,
    "elu": F.elu,
    "selu": F.selu,
    "softplus": F.softplus,
    "softsign": F.softsign,
    "hardsigmoid": _hard_sigmoid,
    "swish": F.silu,
    "mish": F.mish,
    "gelu": F.gelu,
}


def activation(name: str | None) -> Activation:
    """The torch function for a TF.js `activation` value; ModelError names unknown ones."""
    key = (name or "linear").replace("_", "").lower()
    try:
        return _ACTIVATIONS[key]
    except KeyError:
        raise ModelError(f"unsupported activation {name!r}") from None


def is_softmax(name: str | None) -> bool:
    """Whether an activation ends in a softmax (loss functions use logits then)."""
    return (name or "").replace("_", "").lower() == "softmax"
