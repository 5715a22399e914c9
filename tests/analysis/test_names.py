"""One meaning per name: a monitor and the symbolic quantity of the same name are the same number,
and the old names that meant two numbers are refused with the new ones."""

import numpy as np
import pytest

from pgflow.analysis import symbolic as S
from pgflow.analysis.bounds import Claim, Run, check
from pgflow.flows import GradientFlow, MatrixFactorization, gradient_descent, init, integrate, monitors, proof_monitors


@pytest.fixture(scope="module")
def runs():
    p = MatrixFactorization.random(m=9, n=7, rank=3, width=4, condition=3.0, seed=5)
    x0 = init.gaussian(p, 0.3, seed=6)
    every = {**monitors.default(p), **proof_monitors.signal_noise(p), **proof_monitors.ye_du(p)}
    flow = integrate(GradientFlow(p), x0, 3.0, t_eval=np.linspace(0, 3, 7), rtol=1e-11, atol=1e-13, monitors=every)
    gd = gradient_descent(p, x0, 0.05, 40, save_every=10, monitors=every)
    return p, flow, gd


def test_every_shared_name_gives_the_same_number(runs):
    p, flow, gd = runs
    shared = sorted(set(flow.monitors) & set(S.QUANTITIES))
    assert {"loss", "grad_norm", "imbalance_fro", "distance", "signal_U_min", "noise_U_norm", "A_norm",
            "P_lambda_min"} <= set(shared)
    for traj in (flow, gd):
        for name in shared:
            symbolic = S.evaluate(name, p, traj.x)
            np.testing.assert_allclose(symbolic, traj.monitors[name], rtol=1e-10, atol=1e-12, err_msg=name)


def test_a_claim_about_a_name_reads_the_monitors_number(runs):
    p, flow, _ = runs
    for name in ("noise_U_norm", "signal_U_min", "imbalance_fro"):
        worst = float(np.max(flow.monitors[name]))
        report = check(Claim(f"{name} <= {worst!r}", rel_allowance=1e-12), Run(p, flow, "gf"))
        assert report.holds and report.worst_ratio == pytest.approx(1.0, rel=1e-9)


def test_old_names_name_the_new_ones(runs):
    _, flow, _ = runs
    with pytest.raises(KeyError, match="'imbalance' is now called 'imbalance_fro'"):
        flow.monitors["imbalance"]
    with pytest.raises(KeyError, match="now called 'noise_U_sq'"):
        S.as_expr("noise_U")
    with pytest.raises(ValueError, match="now called 'signal_U_sq'"):
        Claim("signal_U >= 0")
    with pytest.raises(TypeError, match="'record_every': it is now called 'save_every'"):
        gradient_descent(runs[0], flow.x[0], 0.1, 2, record_every=1)
    with pytest.raises(TypeError, match="'tol': it is now called 'allowance'"):
        Claim("loss >= 0", tol="0")


def test_one_name_across_the_api_and_the_run_fields():
    """The number of sensing measurements is ``n_measurements`` and the observed fraction of a completion
    problem ``observed``, in the library and in a run description alike; the old names say the new."""
    from pgflow.analysis import setups
    from pgflow.analysis.sweeps import Sweep
    from pgflow.flows import MatrixCompletion
    from pgflow.flows.operators import EntrySampling

    sensing = setups.build_problem(setups.defaults(problem="sensing", n_measurements=30))
    completion = setups.build_problem(setups.defaults(problem="completion", observed=0.25, m=8, n=8))
    assert sensing.operator.n_measurements == 30 and completion.operator.n_measurements == 16
    assert MatrixCompletion.random(8, 8, 2, 2, observed=0.25).operator.n_measurements == 16
    with pytest.raises(ValueError, match="'measurements' is now called 'n_measurements'"):
        Sweep(base={"problem": "sensing", "measurements": 30}, grid={"scale": [0.1]})
    with pytest.raises(TypeError, match="'fraction': it is now called 'observed'"):
        MatrixCompletion.random(8, 8, 2, 2, fraction=0.25)
    with pytest.raises(TypeError, match="'fraction': it is now called 'observed'"):
        EntrySampling.uniform((8, 8), fraction=0.25, seed=0)
