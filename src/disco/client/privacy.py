"""DISCO's client-side differential privacy on a round's update (before it leaves the client).

The update is `new - previous` over all tensors. With `clippingRadius` C its Frobenius norm is
clipped to C; with `noiseScale` σ Gaussian noise of standard deviation σ·C (σ alone without
clipping) is added to every coordinate — the Gaussian mechanism with sensitivity C. (DISCO 2.1.1
passes σ²·C² as the standard deviation; we use the textbook σ·C and say so.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Arrays = list[npt.NDArray[np.float32]]


def privatize(
    new: Sequence[npt.NDArray[np.float32]],
    previous: Sequence[npt.NDArray[np.float32]],
    clipping_radius: float | None,
    noise_scale: float | None,
    rng: np.random.Generator,
) -> Arrays:
    """Weights to send: `previous + clip(new - previous) + noise`; unchanged when both are None."""
    if clipping_radius is None and noise_scale is None:
        return [np.asarray(w, np.float32) for w in new]
    diffs = [
        np.asarray(n, np.float64) - np.asarray(p, np.float64)
        for n, p in zip(new, previous, strict=True)
    ]
    if clipping_radius is not None:
        if clipping_radius <= 0:
            raise ValueError("clippingRadius must be positive")
        norm = float(np.sqrt(sum(float(np.sum(d * d)) for d in diffs)))
        factor = max(1.0, norm / clipping_radius)
        diffs = [d / factor for d in diffs]
    if noise_scale is not None:
        if noise_scale < 0:
            raise ValueError("noiseScale must be non-negative")
        std = noise_scale * (clipping_radius if clipping_radius is not None else 1.0)
        diffs = [d + rng.normal(0.0, std, size=d.shape) for d in diffs]
    return [
        (np.asarray(p, np.float64) + d).astype(np.float32)
        for p, d in zip(previous, diffs, strict=True)
    ]
