"""A participant's client-side DP plan: how to clip and noise its updates, and its budget.

Built from a task's settings by `client_plan`:
- DISCO 2.1.1's form: `clippingRadius` C and/or `noiseScale` σ -> noise std σ·C (σ without C);
  the account uses z = σ/2 (see `mechanisms`), at the task's `privacy.delta` (default 1e-5).
- Newer DISCO's target form `privacy.differentialPrivacy: {clippingRadius, epsilon, delta}`:
  the noise is calibrated with the accountant so that the rounds the budget covers
  (`rounds`, or the participant's planned number of rounds) spend at most ε at δ. (DISCO itself
  applies the classic one-shot bound σ = 2C·sqrt(2 ln(1.25/δ))/ε every round, which composes
  to far more than ε over a training; we make ε the total.)
- The budget: `privacy.budget.epsilon` (default: the target ε), and what to do once the next
  round would exceed it: `onExhausted: "stop"` (default) or `"warn"`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from .accountant import DEFAULT_DELTA, Account, noise_for
from .mechanisms import local_noise_multiplier

OnExhausted = Literal["stop", "warn"]


@dataclass(frozen=True, slots=True)
class ClientPlan:
    """Clip radius and noise std of each update, plus what the account needs."""

    clipping_radius: float | None
    noise_std: float | None
    delta: float = DEFAULT_DELTA
    budget: float | None = None
    on_exhausted: OnExhausted = "stop"

    @property
    def private(self) -> bool:
        """Whether updates are clipped and noised (an account only makes sense then)."""
        return bool(self.clipping_radius and self.noise_std)

    @property
    def noise_multiplier(self) -> float | None:
        """z of the account, or None when the updates carry no DP guarantee."""
        if not self.private:
            return None
        assert self.clipping_radius is not None and self.noise_std is not None
        return local_noise_multiplier(self.noise_std, self.clipping_radius)

    def account(self) -> Account | None:
        """A fresh account for this plan (None without a DP guarantee)."""
        z = self.noise_multiplier
        return None if z is None else Account(z, self.delta)


def client_plan(
    *,
    clipping_radius: float | None = None,
    noise_scale: float | None = None,
    target_epsilon: float | None = None,
    target_delta: float | None = None,
    target_rounds: int | None = None,
    delta: float | None = None,
    budget: float | None = None,
    on_exhausted: OnExhausted = "stop",
    planned_rounds: int = 1,
) -> ClientPlan:
    """The plan for these task settings (module docstring); `planned_rounds` is the
    participant's own count of rounds, used when the target form names no `rounds`."""
    if target_epsilon is not None:
        radius = 1.0 if clipping_radius is None else float(clipping_radius)
        account_delta = target_delta if target_delta is not None else (delta or DEFAULT_DELTA)
        rounds = max(1, target_rounds if target_rounds is not None else planned_rounds)
        z = noise_for(float(target_epsilon), rounds, account_delta)
        return ClientPlan(
            clipping_radius=radius,
            noise_std=2.0 * radius * z,
            delta=account_delta,
            budget=float(budget) if budget is not None else float(target_epsilon),
            on_exhausted=on_exhausted,
        )
    std: float | None = None
    if noise_scale is not None and noise_scale > 0:
        std = float(noise_scale) * (float(clipping_radius) if clipping_radius else 1.0)
    if budget is not None and not math.isfinite(budget):
        budget = None
    return ClientPlan(
        clipping_radius=float(clipping_radius) if clipping_radius else None,
        noise_std=std,
        delta=delta if delta is not None else DEFAULT_DELTA,
        budget=budget,
        on_exhausted=on_exhausted,
    )
