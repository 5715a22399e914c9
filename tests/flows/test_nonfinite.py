"""No silent NaN: a non-finite loss or monitor is reported once, with where it arose."""

import warnings

import numpy as np
import pytest

from pgflow.flows import (GradientFlow, MatrixFactorization, NonFiniteMonitor, NonFiniteWarning, Problem,
                          gradient_descent, init, integrate, monitors)
from pgflow.flows.checks import nonfinite_where


@pytest.fixture(scope="module")
def mf():
    p = MatrixFactorization.random(m=5, n=4, rank=2, width=2, seed=0)
    return p, init.gaussian(p, 0.3, seed=1)


def test_where_names_the_first_state_and_counts_the_rest():
    assert nonfinite_where(np.ones(4)) is None
    assert nonfinite_where(np.array([1.0, np.nan, 2.0, np.inf]), t=[0.0, 0.5, 1.0, 1.5]) == \
        "nan at t = 0.5 (saved state 1 of 4, and 1 later ones)"
    assert nonfinite_where(np.array([[1.0, 2.0], [np.inf, 0.0]]), item="state") == "inf at state 1 of 2"
    assert nonfinite_where(np.float64(np.nan)) == "nan" and nonfinite_where(np.arange(3)) is None


def test_the_loss_of_a_nan_state_warns_once_naming_the_cause(mf):
    p, x = mf
    y = x.copy()
    y[3] = np.nan
    with pytest.warns(NonFiniteWarning, match="MatrixFactorization.loss is nan: the state has 1 non-finite") as rec:
        assert np.isnan(p.loss(y))
    assert len(rec) == 1
    with pytest.warns(NonFiniteWarning, match="nan at state 1 of 3, and 1 later ones"):
        values = p.loss(np.stack([x, y, y]))
    assert np.isfinite(values[0]) and np.isnan(values[1:]).all()
    with pytest.warns(NonFiniteWarning, match="loss is inf: the state is finite"), np.errstate(over="ignore"):
        p.loss(1e160 * x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p.loss(x)   # a finite loss says nothing


def test_a_subclass_loss_calling_its_parent_warns_once(mf):
    class Regularized(MatrixFactorization):
        def loss(self, x):
            return super().loss(x) + 0.5 * np.sum(np.asarray(x) ** 2, axis=-1)

        def grad(self, x, out=None):
            g = MatrixFactorization.grad(self, x) + np.asarray(x)
            if out is None:
                return g
            out[...] = g
            return out

    p, x = mf
    y = np.full_like(x, np.nan)
    with pytest.warns(NonFiniteWarning, match="Regularized.loss is nan") as rec:
        Regularized(p.target, 2).loss(y)
    assert len(rec) == 1


def test_a_problem_from_scratch_reports_its_nan_loss():
    class Log(Problem):
        dim = 1

        def loss(self, x):
            return np.log(np.asarray(x)[..., 0])

        def grad(self, x, out=None):
            return 1.0 / np.asarray(x)

    with pytest.warns(NonFiniteWarning, match="Log.loss is nan"), np.errstate(invalid="ignore"):
        Log().loss(np.array([-1.0]))


def test_monitors_evaluated_by_hand_warn_with_the_time(mf):
    p, x = mf
    with pytest.warns(NonFiniteWarning, match="monitor 'ratio' is inf at t = 2 \\(saved state 1 of 2\\)"):
        monitors.evaluate({"ratio": lambda t, x: np.inf if t == 2.0 else 1.0 / (2.0 - t)}, np.array([0.0, 2.0]),
                          np.stack([x, x]))


def test_integrate_and_gd_raise_on_a_nan_monitor_and_keep_the_run(mf):
    p, x = mf
    grid = np.linspace(0.0, 1.0, 11)
    bad = {"late": lambda t, x: np.nan if t > 0.55 else 1.0}
    with pytest.raises(NonFiniteMonitor, match="monitor 'late' is nan at t = 0.6 \\(saved state 6 of 11, and 4 later"
                                               " ones\\), on a finite state") as err:
        integrate(GradientFlow(p), x, 1.0, t_eval=grid, monitors=bad)
    run = err.value.trajectory
    assert err.value.monitor == "late" and run.t.shape == (11,) and np.isfinite(run.x).all()
    np.testing.assert_array_equal(run.monitors["late"], np.where(grid > 0.55, np.nan, 1.0))
    with pytest.raises(NonFiniteMonitor, match="monitor 'late' of batch member 0 is nan at t = 0.6"):
        integrate(GradientFlow(p), np.stack([x, x]), 1.0, t_eval=grid, monitors=bad)
    with pytest.raises(NonFiniteMonitor, match="monitor 'late' is nan at t = 0.6"):
        gradient_descent(p, x, 0.05, 20, save_every=1, monitors=bad)
