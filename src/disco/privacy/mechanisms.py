"""Gaussian mechanisms on model updates: client-side (local) and central DP with adaptive clipping.

Client side (DISCO's `clippingRadius` C / `noiseScale` σ, or the ε/δ target form): the round's
update `new - previous` is clipped to L2 norm C and Gaussian noise is added to every coordinate.
Two participants' datasets may yield any two clipped updates, at distance up to 2C, so the
noise multiplier of the account is std / (2C) (DISCO's σ·C noise gives z = σ/2).

Central (`privacy.central`, on the server; DP-FedAvg after McMahan et al. 2018): each update's
difference to the current global model is clipped to C, the clipped differences are summed,
Gaussian noise of std z·C is added to the sum (adding or removing one participant moves the
sum by at most C) and the result divided by the number of updates. With adaptive clipping
(Andrew et al., 2021, "Differentially private learning with adaptive clipping") C follows a
target quantile γ of the update norms: each round the fraction b of unclipped updates is
estimated with noise of std σ_b on the count, and C ← C·exp(-η(b̃ - γ)). The update noise is
raised to z_Δ = (z⁻² - (2σ_b)⁻²)^(-1/2) so that the pair (sum, count) is exactly as private as
one Gaussian mechanism with multiplier z, which is what the account records.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .accountant import DEFAULT_DELTA, Account

Weights = list[NDArray[np.float32]]


def l2_norm(tensors: Sequence[NDArray[Any]]) -> float:
    """The L2 (Frobenius) norm of all tensors together."""
    return math.sqrt(sum(float(np.sum(np.square(t, dtype=np.float64))) for t in tensors))


def clip(tensors: Sequence[NDArray[Any]], radius: float) -> tuple[list[NDArray[np.float64]], float]:
    """The tensors scaled to L2 norm at most `radius`, and their norm before clipping."""
    if not (radius > 0 and math.isfinite(radius)):
        raise ValueError(f"the clipping radius must be positive, got {radius}")
    norm = l2_norm(tensors)
    factor = max(1.0, norm / radius)
    return [np.asarray(t, np.float64) / factor for t in tensors], norm


def add_noise(
    tensors: Sequence[NDArray[Any]], std: float, rng: np.random.Generator
) -> list[NDArray[np.float64]]:
    """Each tensor plus i.i.d. N(0, std²) noise per coordinate."""
    if not (std >= 0 and math.isfinite(std)):
        raise ValueError(f"the noise standard deviation must be non-negative, got {std}")
    return [np.asarray(t, np.float64) + rng.normal(0.0, std, size=np.shape(t)) for t in tensors]


def local_noise_multiplier(noise_std: float, clipping_radius: float) -> float:
    """Noise multiplier of a client-side Gaussian mechanism (replace-one sensitivity 2C)."""
    return noise_std / (2.0 * clipping_radius)


@dataclass
class CentralGaussian:
    """Server-side DP on the aggregate (module docstring); one per task, kept across rounds."""

    noise_multiplier: float
    clipping_radius: float
    delta: float = DEFAULT_DELTA
    adaptive: bool = False
    target_quantile: float = 0.5
    clipping_learning_rate: float = 0.2
    count_noise: float | None = None  # σ_b; default: participants / 20 (the paper's choice)
    account: Account = field(init=False)
    last_unclipped_fraction: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if not (self.clipping_radius > 0 and math.isfinite(self.clipping_radius)):
            raise ValueError("the clipping radius must be positive")
        if not 0 <= self.target_quantile <= 1:
            raise ValueError("the target quantile must be in [0, 1]")
        self.account = Account(self.noise_multiplier, self.delta)

    @property
    def epsilon(self) -> float:
        """ε spent so far by any participant that contributed to every noised round."""
        return self.account.epsilon

    def update_noise_multiplier(self, participants: int) -> float:
        """z_Δ: the multiplier of the noise on the sum (raised when the count is also noised)."""
        if not self.adaptive:
            return self.noise_multiplier
        sigma_b = self._count_noise(participants)
        rest = self.noise_multiplier**-2 - (2 * sigma_b) ** -2
        if rest <= 0:
            raise ValueError(
                f"the count noise σ_b = {sigma_b:g} is too small for noise multiplier "
                f"{self.noise_multiplier:g}: need σ_b > z / 2"
            )
        return float(rest**-0.5)

    def _count_noise(self, participants: int) -> float:
        if self.count_noise is not None:
            return self.count_noise
        return max(participants / 20.0, self.noise_multiplier / 2 * 1.05)

    def aggregate(
        self,
        updates: Sequence[Sequence[NDArray[Any]]],
        previous: Sequence[NDArray[Any]],
        rng: np.random.Generator,
    ) -> Weights:
        """previous + (Σ clip(u_i - previous) + N(0, (z_Δ·C)²)) / n; spends one round."""
        n = len(updates)
        if n == 0:
            raise ValueError("no updates to aggregate")
        radius = self.clipping_radius
        total = [np.zeros(np.shape(p), np.float64) for p in previous]
        unclipped = 0
        for update in updates:
            diff = [
                np.asarray(u, np.float64) - np.asarray(p, np.float64)
                for u, p in zip(update, previous, strict=True)
            ]
            clipped, norm = clip(diff, radius)
            unclipped += norm <= radius
            for acc, c in zip(total, clipped, strict=True):
                acc += c
        noisy = add_noise(total, self.update_noise_multiplier(n) * radius, rng)
        result = [
            (np.asarray(p, np.float64) + s / n).astype(np.float32)
            for p, s in zip(previous, noisy, strict=True)
        ]
        if self.adaptive:
            sigma_b = self._count_noise(n)
            fraction = (unclipped + rng.normal(0.0, sigma_b)) / n
            self.last_unclipped_fraction = fraction
            self.clipping_radius = radius * math.exp(
                -self.clipping_learning_rate * (fraction - self.target_quantile)
            )
        self.account.spend()
        return result
