"""The privacy account: ε spent after k rounds of a Gaussian mechanism, at a given δ.

Backed by Google's `dp-accounting` (its Rényi-DP accountant; the library also calibrates the
noise for an (ε, δ) target). We picked it over Opacus's RDP accountant because Opacus needs
torch, which the server must not install, whereas dp-accounting is pure Python on numpy/scipy
and maintained with TensorFlow Privacy. Its RDP accountant answers in about a millisecond at
any number of rounds (its privacy-loss-distribution accountant is tighter but takes seconds per
query, too slow to report ε after every round); RDP over-estimates ε a little (never under).

One round of a participant's training that leaves its data through a Gaussian mechanism with
noise multiplier z (noise standard deviation / L2 sensitivity) is one `GaussianDpEvent(z)`;
rounds compose. Participation is not sampled by the server, so no amplification is claimed.
The library is imported on first use (it loads scipy), so a server without DP tasks never pays.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

from disco.errors import DiscoError

DEFAULT_DELTA = 1e-5
"""δ of the account when a task names none."""


class PrivacyAccountingError(DiscoError, ValueError):
    """Parameters the accountant cannot work with."""


def _library() -> Any:
    import dp_accounting

    return dp_accounting


def _check(noise_multiplier: float, rounds: int, delta: float) -> None:
    if not (noise_multiplier > 0 and math.isfinite(noise_multiplier)):
        raise PrivacyAccountingError(
            f"the noise multiplier must be positive, got {noise_multiplier}"
        )
    if rounds < 0:
        raise PrivacyAccountingError("the number of rounds must be non-negative")
    if not 0 < delta < 1:
        raise PrivacyAccountingError(f"δ must be in (0, 1), got {delta}")


@functools.lru_cache(maxsize=4096)
def epsilon(noise_multiplier: float, rounds: int, delta: float = DEFAULT_DELTA) -> float:
    """ε spent by `rounds` Gaussian mechanisms with this noise multiplier, at δ (0 for no round)."""
    _check(noise_multiplier, rounds, delta)
    if rounds == 0:
        return 0.0
    dp = _library()
    accountant = dp.rdp.RdpAccountant()
    accountant.compose(dp.GaussianDpEvent(noise_multiplier), count=rounds)
    return float(accountant.get_epsilon(delta))


@functools.lru_cache(maxsize=256)
def noise_for(target_epsilon: float, rounds: int, delta: float = DEFAULT_DELTA) -> float:
    """The smallest noise multiplier whose `rounds` compositions spend at most ε at δ."""
    if not (target_epsilon > 0 and math.isfinite(target_epsilon)):
        raise PrivacyAccountingError(f"ε must be positive, got {target_epsilon}")
    _check(1.0, rounds, delta)
    if rounds == 0:
        raise PrivacyAccountingError("calibrating noise needs at least one round")
    dp = _library()
    multiplier = dp.calibrate_dp_mechanism(
        lambda: dp.rdp.RdpAccountant(),
        lambda z: dp.SelfComposedDpEvent(dp.GaussianDpEvent(z), rounds),
        target_epsilon,
        delta,
        bracket_interval=dp.LowerEndpointAndGuess(1e-3, 1.0),
        tol=1e-4,
    )
    z = float(multiplier) + 1e-4  # the search tolerance, on the safe side
    return z


@dataclass
class Account:
    """One participant's running account: rounds released with noise multiplier z."""

    noise_multiplier: float
    delta: float = DEFAULT_DELTA
    rounds: int = 0
    history: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check(self.noise_multiplier, self.rounds, self.delta)

    @property
    def epsilon(self) -> float:
        """ε spent so far."""
        return epsilon(self.noise_multiplier, self.rounds, self.delta)

    def epsilon_after(self, more_rounds: int = 1) -> float:
        """ε that `more_rounds` further rounds would bring the account to."""
        return epsilon(self.noise_multiplier, self.rounds + more_rounds, self.delta)

    def spend(self) -> float:
        """Record one released round; the new ε."""
        self.rounds += 1
        spent = self.epsilon
        self.history.append(spent)
        return spent
