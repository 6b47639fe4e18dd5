"""The privacy account against reference values, and the noise the mechanisms really add."""

import math

import numpy as np
import pytest
from scipy import optimize, stats

from disco.privacy import (
    Account,
    CentralGaussian,
    PrivacyAccountingError,
    add_noise,
    client_plan,
    clip,
    epsilon,
    noise_for,
)


def analytic_gaussian_epsilon(mu: float, delta: float) -> float:
    """Exact ε of a Gaussian mechanism with sensitivity/σ = mu (Balle & Wang 2018, Thm 8):
    δ(ε) = Φ(-ε/μ + μ/2) - e^ε Φ(-ε/μ - μ/2). k compositions of z are one with μ = √k / z."""

    def gap(eps: float) -> float:
        return (
            float(
                stats.norm.cdf(-eps / mu + mu / 2)
                - math.exp(eps) * stats.norm.cdf(-eps / mu - mu / 2)
            )
            - delta
        )

    return float(optimize.brentq(gap, 0.0, 500.0))


def classic_rdp_epsilon(z: float, rounds: int, delta: float) -> float:
    """Mironov (2017), Prop. 3 on the RDP of k Gaussians, α·k/(2z²): ε = min over α of
    k·α/(2z²) + log(1/δ)/(α - 1). The library's conversion is tighter, never looser."""
    alphas = np.linspace(1.01, 512, 200_000)
    return float(np.min(rounds * alphas / (2 * z * z) + math.log(1 / delta) / (alphas - 1)))


@pytest.mark.parametrize(
    ("z", "rounds", "delta"), [(1.0, 1, 1e-5), (1.1, 50, 1e-5), (4.0, 100, 1e-6), (0.8, 10, 1e-3)]
)
def test_epsilon_lies_between_the_exact_gaussian_and_the_classic_rdp_bound(
    z: float, rounds: int, delta: float
) -> None:
    import dp_accounting

    spent = epsilon(z, rounds, delta)
    exact = analytic_gaussian_epsilon(math.sqrt(rounds) / z, delta)
    reference = dp_accounting.get_epsilon_gaussian(z / math.sqrt(rounds), delta)
    assert reference == pytest.approx(exact, rel=1e-3)  # the library's exact Gaussian
    assert exact <= spent <= classic_rdp_epsilon(z, rounds, delta) * 1.0001
    assert spent <= exact * 1.35  # and RDP stays close to the truth


def test_epsilon_matches_the_library_reference_values() -> None:
    """Our account (cached, composed per round) gives exactly what dp-accounting's RDP
    accountant gives when driven directly; the test above pins both between independent
    bounds."""
    import dp_accounting

    for z, rounds, delta in [(1.0, 1, 1e-5), (2.0, 30, 1e-5), (5.0, 200, 1e-6)]:
        accountant = dp_accounting.rdp.RdpAccountant()
        accountant.compose(dp_accounting.GaussianDpEvent(z), rounds)
        assert epsilon(z, rounds, delta) == pytest.approx(accountant.get_epsilon(delta), rel=1e-9)


def test_epsilon_grows_with_rounds_and_is_zero_before_any() -> None:
    values = [epsilon(2.0, k, 1e-5) for k in range(4)]
    assert values[0] == 0.0
    assert values == sorted(values) and len(set(values)) == 4


def test_noise_for_a_target_spends_at_most_the_target() -> None:
    z = noise_for(8.0, 20, 1e-5)
    spent = epsilon(z, 20, 1e-5)
    assert spent <= 8.0
    assert spent == pytest.approx(8.0, rel=0.01)
    assert noise_for(1.0, 20, 1e-5) > z  # a smaller ε needs more noise


def test_account_tracks_rounds() -> None:
    account = Account(1.5, 1e-5)
    assert account.epsilon == 0.0
    first = account.spend()
    assert account.epsilon_after(1) == pytest.approx(epsilon(1.5, 2, 1e-5))
    second = account.spend()
    assert account.history == [first, second] and second > first


def test_accountant_refuses_nonsense() -> None:
    with pytest.raises(PrivacyAccountingError):
        epsilon(0.0, 3)
    with pytest.raises(PrivacyAccountingError):
        epsilon(1.0, 3, delta=1.5)
    with pytest.raises(PrivacyAccountingError):
        noise_for(-1.0, 3)


def test_measured_noise_std_matches_the_configured_value() -> None:
    rng = np.random.default_rng(0)
    zeros = [np.zeros((400, 500))]
    (noisy,) = add_noise(zeros, 0.37, rng)
    n = noisy.size
    measured = float(noisy.std())
    # the sample std of n normals is within ~ std / sqrt(2n) of the truth; allow 5 of those
    assert abs(measured - 0.37) < 5 * 0.37 / math.sqrt(2 * n)
    assert abs(float(noisy.mean())) < 5 * 0.37 / math.sqrt(n)


def test_client_plan_noise_std_is_what_the_update_gets() -> None:
    plan = client_plan(
        target_epsilon=8.0, target_delta=1e-5, planned_rounds=20, clipping_radius=0.5
    )
    assert plan.private and plan.clipping_radius == 0.5
    assert plan.noise_multiplier == pytest.approx(noise_for(8.0, 20, 1e-5))
    assert plan.noise_std == pytest.approx(2 * 0.5 * noise_for(8.0, 20, 1e-5))
    assert plan.budget == 8.0
    legacy = client_plan(clipping_radius=2.0, noise_scale=0.5)
    assert legacy.noise_std == 1.0 and legacy.noise_multiplier == 0.25
    assert not client_plan(clipping_radius=2.0).private


def test_central_noise_on_the_mean_has_the_configured_std() -> None:
    rng = np.random.default_rng(1)
    central = CentralGaussian(noise_multiplier=1.3, clipping_radius=2.0)
    previous = [np.zeros(100_000, np.float32)]
    updates = [[np.zeros(100_000, np.float32)] for _ in range(4)]
    (result,) = central.aggregate(updates, previous, rng)
    expected = 1.3 * 2.0 / 4
    n = result.size
    assert abs(float(result.std()) - expected) < 5 * expected / math.sqrt(2 * n)
    assert central.epsilon == pytest.approx(epsilon(1.3, 1, 1e-5))


def test_central_clips_each_update_to_the_radius() -> None:
    rng = np.random.default_rng(2)
    central = CentralGaussian(noise_multiplier=1e-9, clipping_radius=1.0)
    previous = [np.zeros(3, np.float32)]
    (result,) = central.aggregate([[np.array([30.0, 40.0, 0.0], np.float32)]], previous, rng)
    np.testing.assert_allclose(result, [0.6, 0.8, 0.0], atol=1e-6)
    clipped, norm = clip([np.array([3.0, 4.0])], 10.0)
    assert norm == 5.0 and np.allclose(clipped[0], [3.0, 4.0])


def test_adaptive_clipping_tracks_the_target_quantile() -> None:
    """Norms uniform on [0, 2] have median 1: C should settle near 1 from far away."""
    rng = np.random.default_rng(3)
    central = CentralGaussian(
        noise_multiplier=1.0,
        clipping_radius=0.05,
        adaptive=True,
        target_quantile=0.5,
        clipping_learning_rate=0.2,
        count_noise=1.0,
    )
    previous = [np.zeros(2, np.float32)]
    radii = []
    for _ in range(150):
        updates = []
        for norm in rng.uniform(0, 2, 50):
            angle = rng.uniform(0, 2 * math.pi)
            updates.append([np.array([norm * math.cos(angle), norm * math.sin(angle)], np.float32)])
        central.aggregate(updates, previous, rng)
        radii.append(central.clipping_radius)
    assert 0.8 < float(np.mean(radii[-50:])) < 1.2
    # the update noise is raised so that (sum, count) stays a z = 1 mechanism
    assert central.update_noise_multiplier(50) == pytest.approx((1.0 - 0.25) ** -0.5)
