"""Weight initializers matching Keras/TF.js, drawn from a seeded numpy Generator.

Used to build the default tasks' initial models deterministically, without TensorFlow.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) as Keras computes them: Dense [in, out], Conv [*kernel, in, out]."""
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive_field = math.prod(shape[:-2])
    return shape[-2] * receptive_field, shape[-1] * receptive_field


def glorot_uniform(rng: np.random.Generator, shape: tuple[int, ...]) -> NDArray[np.float32]:
    """U(-limit, limit) with limit = sqrt(6 / (fan_in + fan_out)) (Keras `glorot_uniform`)."""
    fan_in, fan_out = fans(shape)
    limit = math.sqrt(6.0 / max(1, fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(np.float32)


def zeros(shape: tuple[int, ...]) -> NDArray[np.float32]:
    """All-zero tensor (Keras `zeros`, the default bias initializer)."""
    return np.zeros(shape, dtype=np.float32)


# TF.js serializations of the initializers above, as `model.toJSON()` writes them.
GLOROT_UNIFORM_JSON = {
    "class_name": "VarianceScaling",
    "config": {"scale": 1, "mode": "fan_avg", "distribution": "uniform", "seed": None},
}
ZEROS_JSON = {"class_name": "Zeros", "config": {}}
