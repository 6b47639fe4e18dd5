"""Differential privacy with an account: Gaussian mechanisms on updates and the ε they spend.

`accountant` wraps dp-accounting (ε after k rounds, noise for an ε target), `mechanisms` clips
and noises updates (client side, and central DP with adaptive clipping on the server), `plan`
turns a task's privacy settings into a participant's clipping, noise and budget.
"""

from .accountant import DEFAULT_DELTA, Account, PrivacyAccountingError, epsilon, noise_for
from .mechanisms import CentralGaussian, add_noise, clip, l2_norm, local_noise_multiplier
from .plan import ClientPlan, OnExhausted, client_plan

__all__ = [
    "DEFAULT_DELTA",
    "Account",
    "CentralGaussian",
    "ClientPlan",
    "OnExhausted",
    "PrivacyAccountingError",
    "add_noise",
    "client_plan",
    "clip",
    "epsilon",
    "l2_norm",
    "local_noise_multiplier",
    "noise_for",
]
