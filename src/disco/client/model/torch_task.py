"""Tasks whose model only PyTorch can express: any `nn.Module`, built by a named factory.

The task's model is stored and exchanged as named float32 tensors (the module's floating-point
`state_dict` entries, in order): a weights manifest plus `weights.bin`, the same files a TF.js
task has, so the server stores, serves and aggregates it unchanged. Its `modelTopology` only
names the factory (`pkg.module:make_model`) that every participant calls to build the module;
before training, the built module's parameter names and shapes are checked against the task's.

JavaScript and browser clients cannot build such a model: the task says so (`torchModel`) and
the server refuses them its model with that reason.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from disco.client.model.convert import TfjsModel
from disco.client.model.errors import ModelError
from disco.tasks.artifacts import FLOAT32, ModelArtifacts, WeightSpec
from disco.tasks.sequential import ARTIFACTS_EXTRA
from disco.tasks.torch_model import TORCH_MODEL_CLASS

Outputs = Literal["logits", "probabilities"]
_FACTORY_RE: Final = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


class TorchModelError(ModelError):
    """A PyTorch task model that cannot be built or does not match the task; says why."""


def check_factory_name(factory: str) -> str:
    """`pkg.module:function`, or TorchModelError."""
    if not isinstance(factory, str) or _FACTORY_RE.fullmatch(factory) is None:
        raise TorchModelError(
            f"model factory {factory!r}: expected 'package.module:function' "
            "(an importable function returning a torch.nn.Module)"
        )
    return factory


def load_factory(factory: str, search_path: Sequence[str | Path] = ()) -> Callable[[], Any]:
    """Import `pkg.module:function`, looking in `search_path` folders first."""
    module_name, _, attribute = check_factory_name(factory).partition(":")
    extra = [str(Path(p).resolve()) for p in search_path if str(Path(p).resolve()) not in sys.path]
    sys.path[:0] = extra
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise TorchModelError(
            f"model factory {factory!r}: cannot import {module_name!r} ({error}); install the "
            "package or pass the folder holding it (--model-path)"
        ) from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise TorchModelError(f"model factory {factory!r}: {module_name} has no {attribute!r}")
    result: Callable[[], Any] = function
    return result


def make_module(factory: str, search_path: Sequence[str | Path] = ()) -> nn.Module:
    """Call the factory; it must return an `nn.Module`."""
    module = load_factory(factory, search_path)()
    if not isinstance(module, nn.Module):
        raise TorchModelError(
            f"model factory {factory!r} returned {type(module).__name__}, not a torch.nn.Module"
        )
    return module


def exchanged_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The state the participants average: every floating-point state_dict entry, in order.

    Integer buffers (BatchNorm's `num_batches_tracked`) are local bookkeeping, not exchanged.
    """
    return {
        name: tensor
        for name, tensor in module.state_dict(keep_vars=True).items()
        if tensor.is_floating_point()
    }


def torch_topology(
    factory: str, input_shape: Sequence[int], outputs: Outputs = "logits"
) -> dict[str, Any]:
    """The `modelTopology` of a PyTorch-only task (input shape in PyTorch layout)."""
    return {
        "class_name": TORCH_MODEL_CLASS,
        "config": {
            "factory": check_factory_name(factory),
            "input_shape": [int(d) for d in input_shape],
            "outputs": outputs,
        },
    }


def torch_artifacts(
    module: nn.Module, factory: str, input_shape: Sequence[int], outputs: Outputs = "logits"
) -> ModelArtifacts:
    """The task model files of `module`: its floating-point state as named float32 tensors."""
    specs: list[WeightSpec] = []
    chunks: list[bytes] = []
    for name, tensor in exchanged_state(module).items():
        array = tensor.detach().to(torch.float32).cpu().numpy()
        specs.append(WeightSpec(name, tuple(int(d) for d in array.shape)))
        chunks.append(np.ascontiguousarray(array, dtype=FLOAT32).tobytes())
    if not specs:
        raise TorchModelError(f"model factory {factory!r}: the module has no parameters")
    topology = torch_topology(factory, input_shape, outputs)
    return ModelArtifacts(topology, specs, b"".join(chunks), dict(ARTIFACTS_EXTRA))


def describe_mismatch(
    expected: Sequence[tuple[str, tuple[int, ...]]], actual: Mapping[str, tuple[int, ...]]
) -> list[str]:
    """Every difference between the task's tensors and the module's, one line each."""
    problems = []
    wanted = dict(expected)
    for name, shape in expected:
        if name not in actual:
            problems.append(f"missing parameter {name!r} {list(shape)}")
        elif tuple(actual[name]) != tuple(shape):
            problems.append(
                f"parameter {name!r}: the module has shape {list(actual[name])}, "
                f"the task {list(shape)}"
            )
    problems.extend(
        f"unexpected parameter {name!r} {list(shape)}"
        for name, shape in actual.items()
        if name not in wanted
    )
    if not problems and list(wanted) != list(actual):
        problems.append("the parameters are in another order than the task's")
    return problems


class TorchTaskModel(nn.Module):
    """A participant's PyTorch task model, with the weight exchange the training session uses.

    Inputs arrive in DISCO's layout (images NHWC) and are handed to the module in PyTorch's
    (NCHW). A module that returns logits gets the head the task's loss expects (softmax for
    categorical, sigmoid for one binary output), so losses and accuracies read probabilities.
    """

    def __init__(self, module: nn.Module, names: Sequence[str], outputs: Outputs = "logits"):
        super().__init__()
        self.module = module
        self.outputs = outputs
        state = exchanged_state(module)
        self._tensors = [state[name] for name in names]
        self._names = list(names)

    @property
    def weight_names(self) -> list[str]:
        return list(self._names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = x.permute(0, 3, 1, 2)
        out: torch.Tensor = self.module(x)
        if self.outputs == "logits":
            out = torch.sigmoid(out) if out.dim() == 2 and out.shape[1] == 1 else out.softmax(-1)
        return out

    @torch.no_grad()
    def set_tfjs_weights(self, weights: Sequence[npt.NDArray[np.float32]]) -> None:
        """Load the exchanged tensors (task order, float32)."""
        if len(weights) != len(self._tensors):
            raise TorchModelError(
                f"expected {len(self._tensors)} weight tensors, got {len(weights)}"
            )
        for name, tensor, array in zip(self._names, self._tensors, weights, strict=True):
            if tuple(array.shape) != tuple(tensor.shape):
                raise TorchModelError(
                    f"weight {name!r}: shape {list(array.shape)}, expected {list(tensor.shape)}"
                )
            tensor.copy_(torch.from_numpy(np.array(array, np.float32)))

    @torch.no_grad()
    def tfjs_weights(self) -> list[npt.NDArray[np.float32]]:
        """The exchanged tensors (task order, float32 copies)."""
        return [
            np.ascontiguousarray(t.detach().to(torch.float32).cpu().numpy(), np.float32)
            for t in self._tensors
        ]


def build_torch_model(
    topology: Mapping[str, Any],
    weight_specs: Sequence[tuple[str, Sequence[int]]],
    search_path: Sequence[str | Path] = (),
) -> TorchTaskModel:
    """Build the task's module with its factory and check it against the task's tensors."""
    config = topology.get("config") or {}
    factory = str(config.get("factory", ""))
    module = make_module(factory, search_path)
    actual = {name: tuple(t.shape) for name, t in exchanged_state(module).items()}
    expected = [(name, tuple(int(d) for d in shape)) for name, shape in weight_specs]
    problems = describe_mismatch(expected, actual)
    if problems:
        listed = "; ".join(problems[:8]) + ("; ..." if len(problems) > 8 else "")
        raise TorchModelError(
            f"the module built by {factory!r} does not match the task's model "
            f"({len(problems)} difference(s)): {listed}"
        )
    outputs: Outputs = "probabilities" if config.get("outputs") == "probabilities" else "logits"
    return TorchTaskModel(module, [name for name, _ in expected], outputs)


def torch_input_shape(topology: Mapping[str, Any]) -> tuple[int, ...] | None:
    """The PyTorch input shape of one sample a PyTorch-only task declares, if any."""
    shape = (topology.get("config") or {}).get("input_shape")
    if isinstance(shape, list) and shape and all(isinstance(d, int) and d > 0 for d in shape):
        return tuple(shape)
    return None


TaskModel: TypeAlias = TfjsModel | TorchTaskModel
"""What a participant trains: both exchange their weights as float32 tensors in task order."""
