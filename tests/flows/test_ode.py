"""Plain ODEs through ``integrate``: a port of scipy's own ``solve_ivp`` tests (integration accuracy,
t_eval, dense output, events with ``terminal``/``direction``, max_step, first_step, backward in time,
complex states), step counts against scipy's, and the bad inputs a solve_ivp user can give."""

import warnings

import numpy as np
import pytest
import scipy.sparse
from scipy.integrate import solve_ivp

from pgflow.flows import BudgetExceeded, Event, IntegrationError, integrate
from pgflow.flows.events import EventWarning

METHODS = ["RK23", "RK45", "DOP853", "Radau", "BDF", "LSODA"]


def fun_rational(t, y):
    return np.array([y[1] / t, y[1] * (y[0] + 2 * y[1] - 1) / (t * (y[0] - 1))])


def jac_rational(t, y):
    return np.array([[0, 1 / t], [-2 * y[1] ** 2 / (t * (y[0] - 1) ** 2), (y[0] + 4 * y[1] - 1) / (t * (y[0] - 1))]])


def sol_rational(t):
    t = np.asarray(t)
    return np.asarray((t / (t + 10), 10 * t / (t + 10) ** 2)).T  # time-first, as a Trajectory's x


def fun_linear(t, y):
    return np.array([-y[0] - 5 * y[1], y[0] + y[1]])


def sol_linear(t):
    t = np.asarray(t)
    return np.vstack((-5 * np.sin(2 * t), 2 * np.cos(2 * t) + np.sin(2 * t))).T


def error(y, y_true, rtol, atol):
    """scipy's test measure: the RMS over components of the error scaled by the tolerance."""
    e = (y - y_true) / (atol + rtol * np.abs(y_true))
    return np.linalg.norm(np.atleast_2d(e), axis=-1) / np.sqrt(np.atleast_2d(e).shape[-1])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("t_span", [(5.0, 9.0), (5.0, 1.0)])
@pytest.mark.parametrize("jac", [None, jac_rational, "sparse"])
def test_integration_accuracy_and_dense_output(method, t_span, jac):
    rtol, atol, y0 = 1e-3, 1e-6, [1 / 3, 2 / 9]
    jac = (lambda t, y: scipy.sparse.csc_matrix(jac_rational(t, y))) if jac == "sparse" else jac
    if jac is not None and method not in ("Radau", "BDF", "LSODA"):
        jac = None  # scipy ignores a Jacobian there too (with a warning)
    run = integrate(fun_rational, y0, t_span, method=method, rtol=rtol, atol=atol, jac=jac, dense_output=True)
    assert run.t[0] == t_span[0] and run.t[-1] == t_span[1]
    assert run.stats.nfev < (50 if method == "DOP853" else 40)
    if method in ("RK23", "RK45", "DOP853", "LSODA"):
        assert run.stats.njev == 0 and run.stats.nlu == 0
    else:
        assert 0 < run.stats.njev < 3 and 0 < run.stats.nlu < 10
    assert np.all(error(run.x, sol_rational(run.t), rtol, atol) < 5)
    tc = np.linspace(*t_span)
    assert np.all(error(run.at(tc), sol_rational(tc), rtol, atol) < 5)
    np.testing.assert_allclose(run.at(run.t), run.x, rtol=1e-15, atol=1e-15)
    assert run.dynamics.kind == "ode" and set(run.monitors) == {"state_norm"}


@pytest.mark.parametrize("method", ["RK23", "RK45", "DOP853", "BDF"])
def test_complex_states_are_integrated_in_complex_arithmetic(method):
    run = integrate(lambda t, y: -y, np.array([0.5 + 1j]), (0.0, 1.0), method=method, rtol=1e-3, atol=1e-6,
                    dense_output=True)
    assert np.iscomplexobj(run.x)
    true = (0.5 + 1j) * np.exp(-run.t)[:, None]
    assert np.all(error(run.x, true, 1e-3, 1e-6) < 5)
    with pytest.raises(ValueError, match="LSODA cannot integrate a complex"):
        integrate(lambda t, y: -y, np.array([0.5 + 1j]), (0.0, 1.0), method="LSODA")


@pytest.mark.parametrize("method", ["Radau", "BDF"])
def test_a_constant_jacobian(method):
    J = np.array([[-1, -5], [1, 1]])
    for jac in (J, scipy.sparse.csc_matrix(J)):
        run = integrate(fun_linear, [0.0, 2.0], (0.0, 2.0), method=method, rtol=1e-3, atol=1e-6, jac=jac)
        assert run.stats.nfev < 100 and run.stats.njev == 0 and 0 < run.stats.nlu < 15
        assert np.all(error(run.x, sol_linear(run.t), 1e-3, 1e-6) < 10)


@pytest.mark.parametrize("method", ["RK23", "RK45", "DOP853"])
def test_explicit_step_counts_are_scipys(method):
    """The in-place steppers take scipy's steps: the same number of steps and evaluations."""
    for t_span in ((5.0, 9.0), (5.0, 1.0)):
        ref = solve_ivp(fun_rational, t_span, [1 / 3, 2 / 9], method=method, rtol=1e-8, atol=1e-10)
        run = integrate(fun_rational, [1 / 3, 2 / 9], t_span, method=method, rtol=1e-8, atol=1e-10)
        assert run.stats.steps == ref.t.size - 1 and run.stats.nfev == ref.nfev
        # the same steps to rounding: the stage sums round differently (one product instead of scipy's
        # passes), and the controller turns that into step sizes equal to ~1e-8, well inside rtol
        np.testing.assert_allclose(run.t, ref.t, rtol=1e-7)
        np.testing.assert_allclose(run.x, ref.y.T, rtol=1e-7, atol=1e-12)


def _event(fun, **attributes):
    for key, value in attributes.items():
        setattr(fun, key, value)
    return fun


@pytest.mark.parametrize("method", METHODS)
def test_events_with_direction_and_terminal_attributes(method):
    y0 = [1 / 3, 2 / 9]

    def e1(t, y):
        return y[0] - y[1] ** 0.7

    def e2(t, y):
        return y[1] ** 0.6 - y[0]

    def e3(t, y):
        return t - 7.4

    run = integrate(fun_rational, y0, (5.0, 8.0), method=method, events=[e1, e2], rtol=1e-3, atol=1e-6)
    assert len(run.events["e1"]) == 1 and len(run.events["e2"]) == 1
    assert 5.3 < run.events["e1"][0] < 5.7 and 7.3 < run.events["e2"][0] < 7.7
    assert run.event_states["e1"].shape == (1, 2)
    assert np.isclose(e1(run.events["e1"][0], run.event_states["e1"][0]), 0)
    up = integrate(fun_rational, y0, (5.0, 8.0), method=method, rtol=1e-3, atol=1e-6,
                   events=[_event(e1, direction=1), _event(e2, direction=1)])
    assert len(up.events["e1"]) == 1 and len(up.events["e2"]) == 0 and up.event_states["e2"].shape == (0, 2)
    down = integrate(fun_rational, y0, (5.0, 8.0), method=method, rtol=1e-3, atol=1e-6,
                     events=[_event(e1, direction=-1), _event(e2, direction=-1)])
    assert len(down.events["e1"]) == 0 and len(down.events["e2"]) == 1
    stop = integrate(fun_rational, y0, (5.0, 8.0), method=method, rtol=1e-3, atol=1e-6, dense_output=True,
                     events=[_event(e1, direction=0), _event(e2, direction=0), _event(e3, terminal=True)])
    assert stop.stats.stopped_at == stop.events["e3"][0] == stop.t[-1] and 7.3 < stop.t[-1] < 7.5
    assert len(stop.events["e1"]) == 1 and len(stop.events["e2"]) == 0
    tc = np.linspace(stop.t[0], stop.t[-1])
    assert np.all(error(stop.at(tc), sol_rational(tc), 1e-3, 1e-6) < 5)
    # backward in time, the directions read in the direction of integration
    back = integrate(fun_rational, [4 / 9, 20 / 81], (8.0, 5.0), method=method, rtol=1e-3, atol=1e-6,
                     events=[_event(e1, direction=-1), _event(e2, direction=-1)])
    assert len(back.events["e1"]) == 1 and len(back.events["e2"]) == 0
    assert 5.3 < back.events["e1"][0] < 5.7


def _oscillator_event(terminal):
    def crossing(t, y):
        return y[0]
    crossing.terminal = terminal
    return crossing


@pytest.mark.parametrize("count", [3, 4])
def test_an_integer_terminal_stops_at_that_occurrence(count):
    run = integrate(lambda t, y: np.array([y[1], -y[0]]), [1.0, 0.0], (0.0, 100.0),
                    events=_oscillator_event(count))
    assert len(run.events["crossing"]) == count and run.stats.stopped_at == run.events["crossing"][-1]
    np.testing.assert_allclose(run.event_states["crossing"][:, 0], 0, atol=1e-12)
    np.testing.assert_allclose(run.events["crossing"], np.pi / 2 + np.pi * np.arange(count), rtol=1e-7)


def test_terminal_values_are_checked():
    osc = lambda t, y: np.array([y[1], -y[0]])  # noqa: E731
    none = integrate(osc, [1.0, 0.0], (0.0, 10.0), events=_oscillator_event(None))
    zero = integrate(osc, [1.0, 0.0], (0.0, 10.0), events=_oscillator_event(0))
    assert none.events == zero.events and len(none.events["crossing"]) == 3
    for bad in (-1, 3.5, "yes"):
        with pytest.raises(ValueError, match="terminal"):
            integrate(osc, [1.0, 0.0], (0.0, 10.0), events=_oscillator_event(bad))


def test_events_after_a_terminal_one_in_the_same_step_are_dropped():
    """Both events cross inside the one (large) step; the later one happened after the run stopped."""
    def early(t, y):
        return t - 0.5
    early.terminal = True

    def late(t, y):
        return t - 0.9

    run = integrate(lambda t, y: np.zeros_like(y), [1.0], (0.0, 1.0), events=[late, early], method="RK45")
    # a zero right-hand side lets the steps grow tenfold: the last one runs from 0.111 to 1, over both times
    assert run.t[-2] < 0.5 and run.stats.t_reached == run.stats.stopped_at == pytest.approx(0.5)
    assert run.events["late"] == () and run.event_states["late"].shape == (0, 1)


@pytest.mark.parametrize("method", ["RK23", "RK45", "DOP853", "Radau", "BDF", "LSODA"])
def test_max_step_and_first_step(method):
    for t_span in ((5.0, 9.0), (5.0, 1.0)):
        run = integrate(fun_rational, [1 / 3, 2 / 9], t_span, method=method, rtol=1e-3, atol=1e-6, max_step=0.5,
                        first_step=0.1, dense_output=True)
        assert run.t[0] == t_span[0] and run.t[-1] == t_span[1]
        assert np.all(np.abs(np.diff(run.t)) <= 0.5 + 1e-15)
        assert abs(run.t[1] - 5.0) == pytest.approx(0.1)
        assert np.all(error(run.x, sol_rational(run.t), 1e-3, 1e-6) < 5)
    with pytest.raises(ValueError, match="first_step = 5 exceeds the span"):
        integrate(fun_rational, [1 / 3, 2 / 9], (5.0, 9.0), method=method, first_step=5.0)
    with pytest.raises(ValueError, match="max_step must be positive"):
        integrate(fun_rational, [1 / 3, 2 / 9], (5.0, 9.0), method=method, max_step=-1.0)


def test_t_eval_forward_backward_and_dense_output_agree():
    y0 = [1 / 3, 2 / 9]
    for t_span in ((5.0, 9.0), (5.0, 1.0)):
        grid = np.linspace(*t_span, 10)
        run = integrate(fun_rational, y0, t_span, rtol=1e-3, atol=1e-6, t_eval=grid)
        np.testing.assert_array_equal(run.t, grid)
        assert np.all(error(run.x, sol_rational(run.t), 1e-3, 1e-6) < 5)
        dense = integrate(fun_rational, y0, t_span, rtol=1e-3, atol=1e-6, t_eval=grid, dense_output=True)
        np.testing.assert_array_equal(dense.x, run.x)
    for grid, t_span in (([5, 5.01, 7, 8, 8.01, 9], (5, 9)), ([5.01, 7, 8, 8.01], (5, 9)),
                         ([5, 4.99, 3, 1.5, 1.1, 1.01, 1], (5, 1)), ([4.99, 3, 1.5, 1.1, 1.01], (5, 1))):
        run = integrate(fun_rational, y0, t_span, rtol=1e-3, atol=1e-6, t_eval=grid)
        np.testing.assert_array_equal(run.t, grid)
    with pytest.raises(ValueError, match="t_eval must lie in"):
        integrate(fun_rational, y0, (5, 9), t_eval=[4, 6])


@pytest.mark.parametrize("method", METHODS)
def test_t_eval_after_a_terminal_event_is_an_empty_output(method):
    def early(t, y):
        return t - 7
    early.terminal = True
    run = integrate(fun_rational, [1 / 3, 2 / 9], (5.0, 9.0), method=method, rtol=1e-3, atol=1e-6,
                    t_eval=np.linspace(7.5, 9, 16), events=early, jac=jac_rational if method in
                    ("Radau", "BDF", "LSODA") else None)
    assert run.t.shape == (0,) and run.x.shape == (0, 2) and run.events["early"] == (7.0,)
    assert run.stats.stopped_at == 7.0


def test_no_integration_and_an_unbounded_span_with_a_terminal_event():
    still = integrate(lambda t, y: -y, [2.0, 3.0], (4.0, 4.0), dense_output=True)
    np.testing.assert_array_equal(still.x, [[2.0, 3.0]])
    np.testing.assert_array_equal(still.at(4.0), [2.0, 3.0])

    def hit_ground(t, y):
        return y[0]
    hit_ground.terminal, hit_ground.direction = True, -1
    run = integrate(lambda t, y: np.array([y[1], -9.80665]), [0.0, 0.01], (0.0, np.inf), events=hit_ground,
                    rtol=1e-3, atol=1e-6)
    assert run.events["hit_ground"][0] == pytest.approx(2 * 0.01 / 9.80665, rel=1e-5)


def test_args_reach_fun_jac_and_events():
    def decay(t, y, rate):
        return -rate * y

    def half(t, y, rate):
        return y[0] - 0.5

    run = integrate(decay, [1.0], (0.0, 5.0), args=(2.0,), events=half, method="Radau",
                    jac=lambda t, y, rate: np.array([[-rate]]), rtol=1e-10, atol=1e-12)
    assert run.events["half"][0] == pytest.approx(np.log(2) / 2, rel=1e-8)
    assert run.meta["jacobian"] == "analytic"


def test_lotka_volterra_and_the_oregonator_against_scipy():
    def lotka(t, z, a, b, c, d):
        x, y = z
        return np.array([a * x - b * x * y, -c * y + d * x * y])

    args = (1.5, 1.0, 3.0, 1.0)
    ref = solve_ivp(lotka, (0, 15), [10, 5], args=args, rtol=1e-12, atol=1e-12, t_eval=np.linspace(0, 15, 31))
    run = integrate(lotka, [10, 5], (0, 15), args=args, rtol=1e-10, atol=1e-10, t_eval=np.linspace(0, 15, 31))
    np.testing.assert_allclose(run.x, ref.y.T, rtol=1e-7)

    def oregonator(t, y):  # stiff: rates from 1 to about 1e4 (Hairer & Wanner's OREGO)
        y1, y2, y3 = y
        return np.array([77.27 * (y2 + y1 * (1 - 8.375e-6 * y1 - y2)), (y3 - (1 + y1) * y2) / 77.27,
                         0.161 * (y1 - y3)])

    ref = solve_ivp(oregonator, (0, 30), [1.0, 2.0, 3.0], method="Radau", rtol=1e-10, atol=1e-10)
    run = integrate(oregonator, [1.0, 2.0, 3.0], (0, 30), rtol=1e-8, atol=1e-8, max_steps=20_000)
    assert run.stats.method == "LSODA" and run.stats.method_reason.startswith("stiff")
    np.testing.assert_allclose(run.final, ref.y[:, -1], rtol=1e-5)


def test_bad_inputs_are_refused_at_the_first_call():
    with pytest.raises(TypeError, match="fun .* must return a numpy array shaped like y0, \\(2,\\), got list"):
        integrate(lambda t, y: [y[1], -y[0]], [1.0, 0.0], 1.0)
    with pytest.raises(ValueError, match="shaped like y0, \\(2,\\), got shape \\(3,\\)"):
        integrate(lambda t, y: np.zeros(3), [1.0, 0.0], 1.0)
    with pytest.raises(ValueError, match="non-finite values at t0 = 0"):
        integrate(lambda t, y: y / 0.0, [1.0, 0.0], 1.0)
    with pytest.raises(TypeError, match="events\\[0\\] must be a callable"):
        integrate(lambda t, y: -y, [1.0], 1.0, events=[3.0])
    with pytest.raises(TypeError, match="fun must be callable"):
        integrate("y' = -y", [1.0], 1.0)
    with pytest.raises(ValueError, match="y0 must be 1-D"):
        integrate(lambda t, y: -y, [[1.0]], 1.0)
    with pytest.raises(ValueError, match="t_span must be an end time or a pair"):
        integrate(lambda t, y: -y, [1.0], (0.0, 1.0, 2.0))
    with pytest.raises(TypeError, match="old argument 't_end': it is now called 't_span'"):
        integrate(lambda t, y: -y, [1.0], t_end=1.0)


def test_a_nan_event_warns_once_naming_it():
    def broken(t, y):
        return np.nan

    with pytest.warns(EventWarning, match="event 'broken' returned NaN at t = 0") as record:
        integrate(lambda t, y: -y, [1.0], 1.0, events=broken)
    assert len([w for w in record if issubclass(w.category, EventWarning)]) == 1


def test_the_tolerance_actually_used_is_recorded():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # scipy says it raised rtol
        run = integrate(lambda t, y: -y, [1.0], 1.0, rtol=1e-20, atol=1e-20)
    assert run.meta["rtol"] == 100 * np.finfo(float).eps


def test_a_finite_time_blow_up_stops_within_its_budget():
    """ẏ = y² from y(0) = 1 has a pole at t = 1: LSODA creeps towards it without end and is stopped by
    its step budget, naming it and t reached; DOP853's step size collapses there, a failure at t = 1."""
    with pytest.raises(BudgetExceeded, match="max_steps") as caught:
        integrate(lambda t, y: y ** 2, [1.0], (0.0, 2.0), max_steps=2000, method="LSODA")
    assert caught.value.budget == "max_steps" and 0.999 < caught.value.t_reached < 1.0
    assert caught.value.partial.t.size == 2001
    with pytest.raises(IntegrationError, match="DOP853 failed at t = 1 of t1 = 2: Required step size"):
        integrate(lambda t, y: y ** 2, [1.0], (0.0, 2.0), method="DOP853")
    with pytest.raises(BudgetExceeded, match="needs 76 MiB, more than max_memory"):
        integrate(lambda t, y: -y, np.ones(1000), 1.0, t_eval=np.linspace(0, 1, 10_000), max_memory=2 ** 20)


def test_an_event_object_takes_an_integer_terminal():
    ev = Event(lambda t, y: y[0], terminal=2, name="zero")
    run = integrate(lambda t, y: np.array([y[1], -y[0]]), [1.0, 0.0], (0.0, 20.0), events=[ev])
    assert len(run.events["zero"]) == 2
