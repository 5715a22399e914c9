"""Figure 9's numbers against what the mathematics says of the balancing regularizer's flow."""

import numpy as np

from pgflow.figures import fig9_balancing as fig


def test_the_imbalance_is_conserved_without_the_regularizer_and_decays_at_the_bound_with_it():
    # a fine grid: the bound's trapezoidal mean over an interval is within O(Δt²) of its true mean
    config = {**fig.CONFIG, **fig.QUICK, "points": 201}
    data = fig.compute(config, np.random.default_rng(config["seed"]))
    t, lams = data["t"], data["lams"]
    assert lams[0] == 0 and np.all(lams[1:] > 0)
    D = data["gf_imbalance"]
    np.testing.assert_allclose(D[0], D[0, 0], rtol=1e-8)          # Ḋ = 0 along the flow of ½‖UVᵀ − Σ‖²
    for i in range(1, lams.size):
        # d/dt log‖D‖ ≤ −λ λ_min(UᵀU + VᵀV): over each grid interval, with the bound's trapezoidal mean
        slope = np.diff(np.log(D[i])) / np.diff(t)
        bound = 0.5 * (data["rate_bound"][i][1:] + data["rate_bound"][i][:-1])
        assert np.all(slope <= -bound + 1e-3 * bound.max()), (lams[i], np.max(slope + bound))
        assert D[i, -1] < D[i - 1, -1]                               # a larger λ balances faster
    # the regularizer vanishes at balanced minimizers: every λ descends towards UVᵀ = Σ, GD close behind
    assert np.all(data["gf_distance"][:, -1] < 0.2 * data["gf_distance"][:, 0])
    np.testing.assert_allclose(data["gd_distance"], data["gf_distance"], rtol=0.05, atol=1e-3)
