"""Build TF.js Sequential layers models (topology JSON + initial weights) in pure Python.

The JSON mirrors what `model.toJSON(null, false)` of @tensorflow/tfjs 4.22.0 writes for the same
layers (key names, defaults, `batch_input_shape`/`dtype` on the first layer), and weight names
follow tfjs's `<snake_class>_<Class><n>/kernel` pattern, so `tf.loadLayersModel` accepts the
result and re-serializes it unchanged.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Final, Self

import numpy as np
from numpy.typing import NDArray

from disco.tasks.artifacts import FLOAT32, ModelArtifacts, WeightSpec
from disco.tasks.initializers import GLOROT_UNIFORM_JSON, ZEROS_JSON, glorot_uniform, zeros

TFJS_VERSION: Final = "4.22.0"
KERAS_VERSION: Final = f"tfjs-layers {TFJS_VERSION}"
BACKEND: Final = "tensor_flow.js"
ARTIFACTS_EXTRA: Final = {
    "format": "layers-model",
    "generatedBy": "disco (python), tfjs-layers 4.22.0 layout",
    "convertedBy": None,
}
_NAME_PREFIX: Final = {
    "Dense": "dense",
    "Conv2D": "conv2d",
    "MaxPooling2D": "max_pooling2d",
    "Flatten": "flatten",
}


def _regularizers(*names: str) -> dict[str, None]:
    return dict.fromkeys(names)


@dataclass(frozen=True)
class _Layer:
    class_name: str
    config: dict[str, Any]
    kernel_shape: tuple[int, ...] | None  # None: the layer has no weights


class SequentialBuilder:
    """Accumulates layers, tracking the output shape so weight shapes follow from it."""

    def __init__(self, input_shape: tuple[int, ...], name: str = "sequential_1") -> None:
        if not input_shape or any(d <= 0 for d in input_shape):
            raise ValueError(f"input shape must be positive dimensions, got {input_shape}")
        self._name = name
        self._input_shape = tuple(input_shape)
        self._shape = tuple(input_shape)
        self._layers: list[_Layer] = []
        self._counts: dict[str, int] = {}

    def _layer_name(self, class_name: str) -> str:
        count = self._counts.get(class_name, 0) + 1
        self._counts[class_name] = count
        return f"{_NAME_PREFIX[class_name]}_{class_name}{count}"

    def _add(
        self,
        class_name: str,
        config: dict[str, Any],
        out_shape: tuple[int, ...],
        kernel: tuple[int, ...] | None = None,
    ) -> Self:
        config = {**config, "name": self._layer_name(class_name), "trainable": True}
        if not self._layers:
            config["batch_input_shape"] = [None, *self._input_shape]
            config["dtype"] = "float32"
        if any(d <= 0 for d in out_shape):
            raise ValueError(f"{class_name} would output an empty shape {out_shape}")
        self._layers.append(_Layer(class_name, config, kernel))
        self._shape = out_shape
        return self

    def dense(self, units: int, activation: str = "linear") -> Self:
        """Fully connected layer on the last axis (kernel [in, units], bias [units])."""
        config = {
            "units": units,
            "activation": activation,
            "use_bias": True,
            "kernel_initializer": copy.deepcopy(GLOROT_UNIFORM_JSON),
            "bias_initializer": copy.deepcopy(ZEROS_JSON),
            **_regularizers(
                "kernel_regularizer",
                "bias_regularizer",
                "activity_regularizer",
                "kernel_constraint",
                "bias_constraint",
            ),
        }
        kernel = (self._shape[-1], units)
        return self._add("Dense", config, (*self._shape[:-1], units), kernel)

    def conv2d(self, filters: int, kernel_size: int, activation: str = "linear") -> Self:
        """2-D convolution, stride 1, 'valid' padding, NHWC (kernel [k, k, in, filters])."""
        if len(self._shape) != 3:
            raise ValueError(f"Conv2D needs a (H, W, C) input, got {self._shape}")
        height, width, channels = self._shape
        config = {
            "filters": filters,
            "kernel_initializer": copy.deepcopy(GLOROT_UNIFORM_JSON),
            "kernel_regularizer": None,
            "kernel_constraint": None,
            "kernel_size": [kernel_size, kernel_size],
            "strides": [1, 1],
            "padding": "valid",
            "data_format": "channels_last",
            "dilation_rate": [1, 1],
            "activation": activation,
            "use_bias": True,
            "bias_initializer": copy.deepcopy(ZEROS_JSON),
            **_regularizers("bias_regularizer", "activity_regularizer", "bias_constraint"),
        }
        out = (height - kernel_size + 1, width - kernel_size + 1, filters)
        return self._add("Conv2D", config, out, (kernel_size, kernel_size, channels, filters))

    def max_pooling2d(self, pool_size: int) -> Self:
        """Max pooling with stride = pool size, 'valid' padding."""
        if len(self._shape) != 3:
            raise ValueError(f"MaxPooling2D needs a (H, W, C) input, got {self._shape}")
        height, width, channels = self._shape
        config = {
            "pool_size": [pool_size, pool_size],
            "padding": "valid",
            "strides": [pool_size, pool_size],
            "data_format": "channels_last",
        }
        out = ((height - pool_size) // pool_size + 1, (width - pool_size) // pool_size + 1)
        return self._add("MaxPooling2D", config, (*out, channels))

    def flatten(self) -> Self:
        """Collapse every non-batch axis (NHWC order)."""
        return self._add("Flatten", {}, (math.prod(self._shape),))

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Shape after the last layer, without the batch axis."""
        return self._shape

    def topology(self) -> dict[str, Any]:
        """The Sequential modelTopology JSON."""
        return {
            "class_name": "Sequential",
            "config": {
                "name": self._name,
                "layers": [
                    {"class_name": layer.class_name, "config": copy.deepcopy(layer.config)}
                    for layer in self._layers
                ],
            },
            "keras_version": KERAS_VERSION,
            "backend": BACKEND,
        }

    def build(self, rng: np.random.Generator) -> ModelArtifacts:
        """Artifacts with Glorot-uniform kernels and zero biases, drawn in layer order."""
        specs: list[WeightSpec] = []
        tensors: list[NDArray[np.float32]] = []
        for layer in self._layers:
            if layer.kernel_shape is None:
                continue
            name = layer.config["name"]
            bias_shape = (layer.kernel_shape[-1],)
            specs.append(WeightSpec(f"{name}/kernel", layer.kernel_shape))
            tensors.append(glorot_uniform(rng, layer.kernel_shape))
            specs.append(WeightSpec(f"{name}/bias", bias_shape))
            tensors.append(zeros(bias_shape))
        data = b"".join(np.ascontiguousarray(t, dtype=FLOAT32).tobytes() for t in tensors)
        return ModelArtifacts(self.topology(), specs, data, dict(ARTIFACTS_EXTRA))
