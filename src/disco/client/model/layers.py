"""One torch module per supported TF.js layer class.

Tensors flow between layers in the TF.js layout (channels last, NHWC for images), so that
Flatten, Dense on the last axis and BatchNormalization(axis=-1) mean exactly what they mean in
TF.js. Spatial layers move to NCHW for the torch kernel and back.

Each weighted layer lists its TF.js weights (`tfjs_weights`): the manifest suffix, the torch
tensor holding it, and the two layout conversions (Dense kernels transposed, Conv2D kernels
permuted from [kh, kw, in, out] to [out, in, kh, kw]).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from disco.client.model.activations import Activation, activation
from disco.client.model.errors import ModelError, UnsupportedLayerError

Shape = tuple[int, ...]
Converter = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TfjsWeight:
    """How one TF.js weight maps onto a torch tensor of a layer."""

    suffix: str  # e.g. "kernel": the manifest name is "<layer name>/kernel"
    tensor: torch.Tensor  # the nn.Parameter or buffer holding it
    to_torch: Converter
    to_tfjs: Converter


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


def _pair(value: Any, name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, Sequence) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return (int(value[0]), int(value[1]))
    raise UnsupportedLayerError(f"{name} must be an int or a pair of ints, got {value!r}")


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's 'same' padding: possibly asymmetric, the extra pixel after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _to_nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2)


def _to_nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1)


class TfjsLayer(nn.Module):
    """Base class: a named layer that knows its TF.js weights."""

    def __init__(self, name: str, class_name: str) -> None:
        super().__init__()
        self.tfjs_name = name
        self.class_name = class_name

    def tfjs_weights(self) -> list[TfjsWeight]:
        return []

    def call(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        if len(inputs) != 1:
            raise ModelError(f"layer {self.tfjs_name!r} takes one input, got {len(inputs)}")
        out: torch.Tensor = self(inputs[0])
        return out


class InputLayer(TfjsLayer):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Dense(TfjsLayer):
    def __init__(self, name: str, config: Mapping[str, Any], kernel_shape: Shape) -> None:
        super().__init__(name, "Dense")
        in_features, units = kernel_shape
        self.linear = nn.Linear(in_features, units, bias=bool(config.get("use_bias", True)))
        self.activation: Activation = activation(config.get("activation"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.linear(x))

    def tfjs_weights(self) -> list[TfjsWeight]:
        weights = [TfjsWeight("kernel", self.linear.weight, lambda t: t.T, lambda t: t.T)]
        if self.linear.bias is not None:
            weights.append(TfjsWeight("bias", self.linear.bias, _same, _same))
        return weights


class Conv2D(TfjsLayer):
    def __init__(self, name: str, config: Mapping[str, Any], kernel_shape: Shape) -> None:
        super().__init__(name, "Conv2D")
        kh, kw, in_channels, filters = kernel_shape
        if config.get("data_format", "channels_last") != "channels_last":
            raise UnsupportedLayerError(f"layer {name!r}: only data_format channels_last")
        self.strides = _pair(config.get("strides", 1), "strides")
        self.dilation = _pair(config.get("dilation_rate", 1), "dilation_rate")
        self.padding = str(config.get("padding", "valid"))
        if self.padding not in ("valid", "same"):
            raise UnsupportedLayerError(f"layer {name!r}: padding {self.padding!r}")
        self.conv = nn.Conv2d(
            in_channels,
            filters,
            (kh, kw),
            stride=self.strides,
            dilation=self.dilation,
            bias=bool(config.get("use_bias", True)),
        )
        self.activation = activation(config.get("activation"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _to_nchw(x)
        if self.padding == "same":
            kh, kw = self.conv.kernel_size
            top, bottom = same_padding(y.shape[2], kh, self.strides[0], self.dilation[0])
            left, right = same_padding(y.shape[3], kw, self.strides[1], self.dilation[1])
            y = F.pad(y, (left, right, top, bottom))
        return self.activation(_to_nhwc(self.conv(y)))

    def tfjs_weights(self) -> list[TfjsWeight]:
        weights = [
            TfjsWeight(
                "kernel",
                self.conv.weight,
                lambda t: t.permute(3, 2, 0, 1),
                lambda t: t.permute(2, 3, 1, 0),
            )
        ]
        if self.conv.bias is not None:
            weights.append(TfjsWeight("bias", self.conv.bias, _same, _same))
        return weights


class Pooling2D(TfjsLayer):
    """MaxPooling2D and AveragePooling2D, with TF's 'same' padding semantics."""

    def __init__(self, name: str, class_name: str, config: Mapping[str, Any]) -> None:
        super().__init__(name, class_name)
        self.pool = _pair(config.get("pool_size", 2), "pool_size")
        strides = config.get("strides")
        self.strides = self.pool if strides is None else _pair(strides, "strides")
        self.padding = str(config.get("padding", "valid"))
        if self.padding not in ("valid", "same"):
            raise UnsupportedLayerError(f"layer {name!r}: padding {self.padding!r}")
        if config.get("data_format", "channels_last") != "channels_last":
            raise UnsupportedLayerError(f"layer {name!r}: only data_format channels_last")
        self.is_max = class_name == "MaxPooling2D"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _to_nchw(x)
        if self.padding == "same":
            top, bottom = same_padding(y.shape[2], self.pool[0], self.strides[0])
            left, right = same_padding(y.shape[3], self.pool[1], self.strides[1])
            pads = (left, right, top, bottom)
            if self.is_max:
                y = F.pad(y, pads, value=float("-inf"))
                return _to_nhwc(F.max_pool2d(y, self.pool, self.strides))
            # TF averages over the real pixels only: divide by the count of unpadded ones.
            ones = F.pad(torch.ones_like(y[:, :1]), pads)
            summed = F.avg_pool2d(F.pad(y, pads), self.pool, self.strides)
            counts = F.avg_pool2d(ones, self.pool, self.strides)
            return _to_nhwc(summed / counts)
        if self.is_max:
            return _to_nhwc(F.max_pool2d(y, self.pool, self.strides))
        return _to_nhwc(F.avg_pool2d(y, self.pool, self.strides))


class ZeroPadding2D(TfjsLayer):
    """Zero rows and columns around a feature map (`padding` [[top, bottom], [left, right]])."""

    def __init__(self, name: str, config: Mapping[str, Any]) -> None:
        super().__init__(name, "ZeroPadding2D")
        if config.get("data_format", "channels_last") != "channels_last":
            raise UnsupportedLayerError(f"layer {name!r}: only data_format channels_last")
        padding = config.get("padding", 1)
        if isinstance(padding, int):
            rows = cols = (padding, padding)
        elif isinstance(padding, Sequence) and len(padding) == 2:
            rows, cols = (
                _pair(item, "padding") if isinstance(item, Sequence) else (item, item)
                for item in padding
            )
        else:
            raise UnsupportedLayerError(f"layer {name!r}: padding {padding!r}")
        self.pads = (0, 0, cols[0], cols[1], rows[0], rows[1])  # F.pad order, NHWC

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, self.pads)


class GlobalPooling2D(TfjsLayer):
    def __init__(self, name: str, class_name: str) -> None:
        super().__init__(name, class_name)
        self.is_max = class_name == "GlobalMaxPooling2D"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=(1, 2)) if self.is_max else x.mean(dim=(1, 2))


class Flatten(TfjsLayer):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)


class Reshape(TfjsLayer):
    def __init__(self, name: str, config: Mapping[str, Any]) -> None:
        super().__init__(name, "Reshape")
        self.target = tuple(int(d) for d in config["target_shape"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.target)


class Dropout(TfjsLayer):
    def __init__(self, name: str, config: Mapping[str, Any]) -> None:
        super().__init__(name, "Dropout")
        self.dropout = nn.Dropout(float(config.get("rate", 0.0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.dropout(x)
        return out


class ActivationLayer(TfjsLayer):
    """Activation, ReLU, LeakyReLU, ELU and Softmax layers."""

    def __init__(self, name: str, class_name: str, config: Mapping[str, Any]) -> None:
        super().__init__(name, class_name)
        self.fn: Activation
        if class_name == "Activation":
            self.fn = activation(config.get("activation"))
        elif class_name == "ReLU":
            max_value = config.get("max_value")
            self.fn = (
                torch.relu
                if max_value is None
                else (lambda x: torch.clamp(x, 0.0, float(max_value)))
            )
        elif class_name == "LeakyReLU":
            alpha = float(config.get("alpha", 0.3))
            self.fn = lambda x: F.leaky_relu(x, alpha)
        elif class_name == "ELU":
            alpha = float(config.get("alpha", 1.0))
            self.fn = lambda x: F.elu(x, alpha)
        else:  # Softmax
            axis = int(config.get("axis", -1))
            self.fn = lambda x: torch.softmax(x, dim=axis)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


class BatchNormalization(TfjsLayer):
    """Normalizes the last (channel) axis, as TF.js does with axis=-1."""

    def __init__(self, name: str, config: Mapping[str, Any], channels: int) -> None:
        super().__init__(name, "BatchNormalization")
        axis = config.get("axis", -1)
        if axis not in (-1, 3, 1) or (axis == 1 and channels <= 0):
            raise UnsupportedLayerError(f"layer {name!r}: BatchNormalization axis {axis!r}")
        self.axis = int(axis)
        self.center = bool(config.get("center", True))
        self.scale = bool(config.get("scale", True))
        # TF's momentum weighs the old value; torch's weighs the new one.
        self.bn = nn.BatchNorm1d(
            channels,
            eps=float(config.get("epsilon", 1e-3)),
            momentum=1.0 - float(config.get("momentum", 0.99)),
            affine=True,
        )
        if not self.scale:
            self.bn.weight.requires_grad_(False)
        if not self.center:
            self.bn.bias.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            normalized: torch.Tensor = self.bn(x)
            return normalized
        moved = x.movedim(-1, 1) if self.axis != 1 else x
        out = F.batch_norm(
            moved,
            self.bn.running_mean,
            self.bn.running_var,
            self.bn.weight,
            self.bn.bias,
            self.training,
            self.bn.momentum if self.bn.momentum is not None else 0.1,
            self.bn.eps,
        )
        return out.movedim(1, -1) if self.axis != 1 else out

    def tfjs_weights(self) -> list[TfjsWeight]:
        weights = []
        if self.scale:
            weights.append(TfjsWeight("gamma", self.bn.weight, _same, _same))
        if self.center:
            weights.append(TfjsWeight("beta", self.bn.bias, _same, _same))
        assert self.bn.running_mean is not None and self.bn.running_var is not None
        weights.append(TfjsWeight("moving_mean", self.bn.running_mean, _same, _same))
        weights.append(TfjsWeight("moving_variance", self.bn.running_var, _same, _same))
        return weights


class Merge(TfjsLayer):
    """Add, Multiply, Average, Maximum, Minimum and Concatenate."""

    def __init__(self, name: str, class_name: str, config: Mapping[str, Any]) -> None:
        super().__init__(name, class_name)
        self.axis = int(config.get("axis", -1))

    def call(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        if len(inputs) < 2:
            raise ModelError(f"layer {self.tfjs_name!r} needs at least two inputs")
        if self.class_name == "Concatenate":
            return torch.cat(inputs, dim=self.axis)
        stacked = torch.stack(inputs)
        if self.class_name == "Add":
            return stacked.sum(0)
        if self.class_name == "Multiply":
            return stacked.prod(0)
        if self.class_name == "Average":
            return stacked.mean(0)
        if self.class_name == "Maximum":
            return stacked.amax(0)
        return stacked.amin(0)
