"""Client-side differential privacy on a round's update (before it leaves the client).

The update is `new - previous` over all tensors: clipped to the plan's radius C and noised with
the plan's standard deviation (`disco.privacy.plan`: DISCO's `clippingRadius` / `noiseScale`, σ·C
with σ alone without clipping, or the ε/δ target form of `privacy.differentialPrivacy`).
DISCO 2.1.1 passes σ²·C² as the standard deviation; we use the textbook σ·C and say so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from disco.privacy import ClientPlan, add_noise, client_plan, clip

Arrays = list[npt.NDArray[np.float32]]


def plan_for(info: Mapping[str, Any], planned_rounds: int) -> ClientPlan:
    """The participant's DP plan from a task's `trainingInformation` (a JSON object)."""
    privacy = info.get("privacy") if isinstance(info.get("privacy"), Mapping) else {}
    assert isinstance(privacy, Mapping)
    target = privacy.get("differentialPrivacy")
    budget = privacy.get("budget") if isinstance(privacy.get("budget"), Mapping) else None
    on_exhausted = "warn" if budget is not None and budget.get("onExhausted") == "warn" else "stop"
    common: dict[str, Any] = {
        "delta": privacy.get("delta"),
        "budget": budget.get("epsilon") if budget is not None else None,
        "on_exhausted": on_exhausted,
        "planned_rounds": planned_rounds,
    }
    if isinstance(target, Mapping):
        return client_plan(
            clipping_radius=target.get("clippingRadius"),
            target_epsilon=target.get("epsilon"),
            target_delta=target.get("delta"),
            target_rounds=target.get("rounds"),
            **common,
        )
    return client_plan(
        clipping_radius=info.get("clippingRadius"), noise_scale=info.get("noiseScale"), **common
    )


def planned_rounds(
    samples: int, batch_size: int, epochs: int, round_duration: int, rounds: int | None
) -> int:
    """Communication rounds a run will have (what an ε target is spread over)."""
    if rounds is not None:
        return max(1, rounds)
    batches = epochs * math.ceil(max(1, samples) / max(1, batch_size))
    return max(1, math.ceil(batches / max(1, round_duration)))


def privatize(
    new: Sequence[npt.NDArray[np.float32]],
    previous: Sequence[npt.NDArray[np.float32]],
    clipping_radius: float | None,
    noise_std: float | None,
    rng: np.random.Generator,
) -> Arrays:
    """Weights to send: `previous + clip(new - previous) + noise`; unchanged when both are None."""
    if clipping_radius is None and noise_std is None:
        return [np.asarray(w, np.float32) for w in new]
    diffs: list[npt.NDArray[np.float64]] = [
        np.asarray(n, np.float64) - np.asarray(p, np.float64)
        for n, p in zip(new, previous, strict=True)
    ]
    if clipping_radius is not None:
        if clipping_radius <= 0:
            raise ValueError("clippingRadius must be positive")
        diffs, _ = clip(diffs, clipping_radius)
    if noise_std is not None:
        if noise_std < 0:
            raise ValueError("the noise must be non-negative")
        diffs = add_noise(diffs, noise_std, rng)
    return [
        (np.asarray(p, np.float64) + d).astype(np.float32)
        for p, d in zip(previous, diffs, strict=True)
    ]
