"""Client-side differential privacy on a round's update (before it leaves the client).

The update is `new - previous` over all tensors: clipped to the plan's radius C and noised with
the plan's standard deviation (`disco.privacy.plan`: DISCO's `clippingRadius` / `noiseScale`, σ·C
with σ alone without clipping, or the ε/δ target form of `privacy.differentialPrivacy`).
DISCO 2.1.1 passes σ²·C² as the standard deviation; we use the textbook σ·C and say so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from disco.privacy import ClientPlan, OnExhausted, add_noise, client_plan, clip
from disco.tasks.schema import TrainingInformation

Arrays = list[npt.NDArray[np.float32]]


def plan_for(info: TrainingInformation, planned_rounds: int) -> ClientPlan:
    """The participant's DP plan from a task's typed settings: the ε/δ target of
    `privacy.differentialPrivacy` when there is one, else DISCO's `clippingRadius`/`noiseScale`."""
    privacy = info.privacy
    budget = privacy.budget if privacy is not None else None
    delta = privacy.delta if privacy is not None else None
    epsilon_budget = budget.epsilon if budget is not None else None
    on_exhausted: OnExhausted = (
        "warn" if budget is not None and budget.on_exhausted == "warn" else "stop"
    )
    target = privacy.differential_privacy if privacy is not None else None
    if target is not None:
        return client_plan(
            clipping_radius=target.clipping_radius,
            target_epsilon=target.epsilon,
            target_delta=target.delta,
            target_rounds=None if target.rounds is None else int(target.rounds),
            delta=delta,
            budget=epsilon_budget,
            on_exhausted=on_exhausted,
            planned_rounds=planned_rounds,
        )
    return client_plan(
        clipping_radius=info.clipping_radius,
        noise_scale=info.noise_scale,
        delta=delta,
        budget=epsilon_budget,
        on_exhausted=on_exhausted,
        planned_rounds=planned_rounds,
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
