"""Build a `torch.nn.Module` from a TF.js layers `modelTopology` and exchange weights with it.

Sequential and functional ("Model") topologies are supported. Weights are read and written in
the TF.js layout and in the model's weight order (the order of `model.weights` in TF.js, which is
also the manifest order and the order DISCO exchanges), so Python and JavaScript participants
average the same tensors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from disco.client.model.errors import ModelError, UnsupportedLayerError
from disco.client.model.layers import (
    ActivationLayer,
    BatchNormalization,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalPooling2D,
    InputLayer,
    Merge,
    Pooling2D,
    Reshape,
    TfjsLayer,
    TfjsWeight,
    ZeroPadding2D,
)

Shape = tuple[int, ...]
NodeKey = tuple[str, int]

SUPPORTED = [
    "InputLayer",
    "Dense",
    "Conv2D",
    "MaxPooling2D",
    "AveragePooling2D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
    "Flatten",
    "Reshape",
    "ZeroPadding2D",
    "Dropout",
    "BatchNormalization",
    "Activation",
    "ReLU",
    "LeakyReLU",
    "ELU",
    "Softmax",
    "Add",
    "Multiply",
    "Average",
    "Maximum",
    "Minimum",
    "Concatenate",
]


def _weight_shape(name: str, suffix: str, shapes: Mapping[str, Shape]) -> Shape:
    """The shape of `<layer>/<suffix>` in the manifest (tolerating name-scope prefixes)."""
    wanted = f"{name}/{suffix}"
    for full, shape in shapes.items():
        if full == wanted or full.endswith("/" + wanted):
            return shape
    raise ModelError(f"the weights manifest has no {wanted!r}")


def _make_layer(
    class_name: str, config: Mapping[str, Any], shapes: Mapping[str, Shape]
) -> TfjsLayer:
    name = str(config.get("name") or class_name)
    if class_name == "InputLayer":
        return InputLayer(name, class_name)
    if class_name == "Dense":
        return Dense(name, config, _weight_shape(name, "kernel", shapes))
    if class_name == "Conv2D":
        return Conv2D(name, config, _weight_shape(name, "kernel", shapes))
    if class_name in ("MaxPooling2D", "AveragePooling2D"):
        return Pooling2D(name, class_name, config)
    if class_name in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
        return GlobalPooling2D(name, class_name)
    if class_name == "Flatten":
        return Flatten(name, class_name)
    if class_name == "Reshape":
        return Reshape(name, config)
    if class_name == "ZeroPadding2D":
        return ZeroPadding2D(name, config)
    if class_name == "Dropout":
        return Dropout(name, config)
    if class_name in ("Activation", "ReLU", "LeakyReLU", "ELU", "Softmax"):
        return ActivationLayer(name, class_name, config)
    if class_name == "BatchNormalization":
        channels = _weight_shape(name, "moving_mean", shapes)[0]
        return BatchNormalization(name, config, channels)
    if class_name in ("Add", "Multiply", "Average", "Maximum", "Minimum", "Concatenate"):
        return Merge(name, class_name, config)
    raise UnsupportedLayerError(
        f"layer {name!r} of class {class_name!r} is not supported "
        f"(supported: {', '.join(SUPPORTED)})"
    )


class TfjsModel(nn.Module):
    """A TF.js layers model as a torch module: same inputs (NHWC), same outputs, same weights."""

    def __init__(
        self,
        layers: list[TfjsLayer],
        inbound: dict[str, list[list[NodeKey]]],
        inputs: list[NodeKey],
        outputs: list[NodeKey],
        weight_order: Sequence[str],
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self._by_name = {layer.tfjs_name: layer for layer in layers}
        self._inbound = inbound
        self._inputs = inputs
        self._outputs = outputs
        self._weights = self._bind_weights(weight_order)

    def _bind_weights(self, order: Sequence[str]) -> list[tuple[str, TfjsWeight]]:
        available: dict[str, TfjsWeight] = {}
        for layer in self.layers:
            assert isinstance(layer, TfjsLayer)
            for weight in layer.tfjs_weights():
                available[f"{layer.tfjs_name}/{weight.suffix}"] = weight
        bound: list[tuple[str, TfjsWeight]] = []
        for full in order:
            match = next((k for k in available if full == k or full.endswith("/" + k)), None)
            if match is None:
                raise ModelError(f"weight {full!r} of the manifest matches no layer weight")
            bound.append((full, available.pop(match)))
        if available:
            raise ModelError(f"layer weights missing from the manifest: {sorted(available)}")
        return bound

    @property
    def weight_names(self) -> list[str]:
        """TF.js weight names, in exchange order."""
        return [name for name, _ in self._weights]

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if len(inputs) != len(self._inputs):
            raise ModelError(f"the model takes {len(self._inputs)} input(s), got {len(inputs)}")
        values: dict[NodeKey, torch.Tensor] = dict(zip(self._inputs, inputs, strict=True))
        for layer in self.layers:
            assert isinstance(layer, TfjsLayer)
            for node_index, sources in enumerate(self._inbound[layer.tfjs_name]):
                key = (layer.tfjs_name, node_index)
                if key in values:  # an input layer already fed
                    continue
                values[key] = layer.call([values[source] for source in sources])
        outputs = [values[key] for key in self._outputs]
        if len(outputs) != 1:
            raise ModelError("models with several outputs are not supported")
        return outputs[0]

    @torch.no_grad()
    def set_tfjs_weights(self, weights: Sequence[npt.NDArray[np.float32]]) -> None:
        """Load weights given in TF.js layout and exchange order."""
        if len(weights) != len(self._weights):
            raise ModelError(f"expected {len(self._weights)} weight tensors, got {len(weights)}")
        for (name, weight), array in zip(self._weights, weights, strict=True):
            value = weight.to_torch(torch.from_numpy(np.array(array, np.float32, copy=True)))
            if tuple(value.shape) != tuple(weight.tensor.shape):
                raise ModelError(
                    f"weight {name!r}: shape {list(array.shape)} does not fit the layer "
                    f"({list(weight.to_tfjs(weight.tensor).shape)} expected)"
                )
            weight.tensor.copy_(value)

    @torch.no_grad()
    def tfjs_weights(self) -> list[npt.NDArray[np.float32]]:
        """The current weights in TF.js layout and exchange order (float32 copies)."""
        return [
            np.ascontiguousarray(weight.to_tfjs(weight.tensor.detach()).cpu().numpy(), np.float32)
            for _, weight in self._weights
        ]


def _sequential(config: Any) -> tuple[list[Mapping[str, Any]], list[dict[str, Any]]]:
    layers = config["layers"] if isinstance(config, Mapping) else config
    if not isinstance(layers, list):
        raise ModelError("Sequential modelTopology has no layer list")
    return [layer for layer in layers if isinstance(layer, Mapping)], []


def build_model(
    topology: Mapping[str, Any], weight_specs: Sequence[tuple[str, Sequence[int]]]
) -> TfjsModel:
    """A torch module for a TF.js `modelTopology`; `weight_specs` are the manifest (name, shape)s.

    Raises UnsupportedLayerError naming the first layer it cannot build.
    """
    if "model_config" in topology:  # a Keras-saved topology wraps the model once more
        topology = topology["model_config"]
    class_name = topology.get("class_name")
    config = topology.get("config")
    shapes = {name: tuple(int(d) for d in shape) for name, shape in weight_specs}
    order = [name for name, _ in weight_specs]
    if class_name == "Sequential":
        raw_layers, _ = _sequential(config)
        layers = [
            _make_layer(str(raw["class_name"]), raw.get("config") or {}, shapes)
            for raw in raw_layers
        ]
        if not layers:
            raise ModelError("the Sequential model has no layers")
        inbound: dict[str, list[list[NodeKey]]] = {}
        previous: NodeKey = ("__input__", 0)
        for layer in layers:
            inbound[layer.tfjs_name] = [[previous]]
            previous = (layer.tfjs_name, 0)
        return TfjsModel(layers, inbound, [("__input__", 0)], [previous], order)
    if class_name in ("Model", "Functional"):
        if not isinstance(config, Mapping):
            raise ModelError("functional modelTopology has no config")
        layers = []
        inbound = {}
        for raw in config.get("layers", []):
            layer = _make_layer(
                str(raw["class_name"]), raw.get("config") or {"name": raw["name"]}, shapes
            )
            layer.tfjs_name = str(raw.get("name", layer.tfjs_name))
            layers.append(layer)
            nodes = raw.get("inbound_nodes") or []
            inbound[layer.tfjs_name] = [
                [(str(src[0]), int(src[1])) for src in node] for node in nodes
            ] or [[]]
        inputs = [(str(i[0]), int(i[1])) for i in config.get("input_layers", [])]
        outputs = [(str(o[0]), int(o[1])) for o in config.get("output_layers", [])]
        return TfjsModel(layers, inbound, inputs, outputs, order)
    raise UnsupportedLayerError(f"model class {class_name!r} is not supported (Sequential, Model)")
