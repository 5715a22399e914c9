"""The problem protocol: a subclass's own gradient reaches every consumer, and a gradient that
disagrees with its loss is refused before anything runs."""

import numpy as np
import pytest

from pgflow.flows import (GradientFlow, MatrixFactorization, ModifiedFlow, PerturbedGradientFlow, Problem,
                          ProblemError, check_problem, gradient_descent, init, integrate)
from pgflow.flows.perturbations import FixedPerturbation

LAM = 0.3


class WeightDecay(MatrixFactorization):
    """½‖UVᵀ − Σ‖² + (λ/2)‖x‖²: only loss and grad are overridden, as a user would."""

    def loss(self, x):
        return super().loss(x) + 0.5 * LAM * np.sum(np.asarray(x) ** 2, axis=-1)

    def grad(self, x, out=None):
        g = super().grad(x, out=out)
        g += LAM * np.asarray(x)
        return g


def exact_hvp(p, x, v):
    return MatrixFactorization.hvp(p, x, v) + LAM * v


@pytest.fixture(scope="module")
def problem():
    base = MatrixFactorization.random(m=7, n=6, rank=2, width=3, condition=4.0, seed=3)
    return WeightDecay(base.target, 3)


def test_every_consumer_uses_the_subclasss_gradient(problem):
    x0 = init.gaussian(problem, 0.5, seed=1)
    assert WeightDecay.negative_grad is Problem.negative_grad and WeightDecay.hvp is Problem.hvp
    np.testing.assert_array_equal(GradientFlow(problem)(0.0, x0), -problem.grad(x0))
    v = np.random.default_rng(2).standard_normal(problem.dim)
    np.testing.assert_allclose(problem.hvp(x0, v), exact_hvp(problem, x0, v), rtol=1e-7, atol=1e-8)
    H = problem.hessian(x0)
    np.testing.assert_allclose(H @ v, exact_hvp(problem, x0, v), rtol=1e-6, atol=1e-7)
    flow = integrate(GradientFlow(problem), x0, 60.0, rtol=1e-12, atol=1e-14)
    assert np.linalg.norm(problem.grad(flow.final)) <= 1e-8
    assert flow.monitors["grad_norm"][-1] == pytest.approx(np.linalg.norm(problem.grad(flow.final)), rel=1e-12)
    parent = MatrixFactorization(problem.target, 3)
    assert np.linalg.norm(parent.grad(flow.final)) > 1e-3  # not the parent's minimizer
    gd = gradient_descent(problem, x0, 0.05, 4000, save_every=4000)
    assert np.linalg.norm(problem.grad(gd.final)) <= 1e-8
    alternating = gradient_descent(problem, x0, 0.05, 4000, save_every=4000, variant="alternating")
    assert np.linalg.norm(problem.grad(alternating.final)) <= 1e-8 and alternating.stats.nfev == 8000
    # the modified flow and the implicit solvers see the subclass's curvature too
    g = problem.grad(x0)
    np.testing.assert_allclose(ModifiedFlow(problem, 0.1)(0.0, x0), -g - 0.05 * exact_hvp(problem, x0, g),
                               rtol=1e-7, atol=1e-8)
    stiff = integrate(GradientFlow(problem), x0, 5.0, method="Radau", rtol=1e-10, atol=1e-12)
    ref = integrate(GradientFlow(problem), x0, 5.0, method="DOP853", rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(stiff.final, ref.final, atol=1e-7)


def _wrong(kind):
    class Wrong(MatrixFactorization):
        def grad(self, x, out=None):
            g = super().grad(x, out=out)
            if kind == "sign":
                np.negative(g, out=g)
            elif kind == "half":
                g *= 0.5
            elif kind == "transposed":  # U's and V's blocks swapped (m = n)
                k = self.dim // 2
                g[..., :k], g[..., k:] = g[..., k:].copy(), g[..., :k].copy()
            return g
    Wrong.__name__ = f"Wrong{kind.title()}"
    return Wrong


@pytest.mark.parametrize("kind", ["sign", "half", "transposed"])
def test_a_gradient_that_disagrees_with_its_loss_is_refused(kind):
    base = MatrixFactorization.random(m=5, n=5, rank=2, width=2, seed=0)
    p = _wrong(kind)(base.target, 2)
    x0 = init.gaussian(p, 0.3, seed=1)
    for build in (lambda: GradientFlow(p), lambda: gradient_descent(p, x0, 0.01, 2),
                  lambda: ModifiedFlow(p, 0.1),
                  lambda: PerturbedGradientFlow(p, FixedPerturbation(np.zeros((5, 5))))):
        with pytest.raises(ProblemError, match=f"Wrong{kind.title()}.grad is not the gradient of .*loss.*h\\^1"):
            build()
    GradientFlow(p, check=False)  # the user's call


def test_a_problem_from_scratch():
    class Rosenbrock(Problem):
        dim = 2

        def loss(self, x):
            x = np.asarray(x)
            return (1 - x[..., 0]) ** 2 + 100 * (x[..., 1] - x[..., 0] ** 2) ** 2

        def grad(self, x, out=None):
            x = np.asarray(x)
            out = np.empty_like(x) if out is None else out
            out[..., 0] = -2 * (1 - x[..., 0]) - 400 * x[..., 0] * (x[..., 1] - x[..., 0] ** 2)
            out[..., 1] = 200 * (x[..., 1] - x[..., 0] ** 2)
            return out

    p = Rosenbrock()
    check_problem(p)
    run = integrate(GradientFlow(p), np.array([-1.0, 1.0]), 2000.0, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(run.final, [1.0, 1.0], atol=1e-6)
    assert set(run.monitors) == {"loss", "grad_norm"} and run.stats.method == "LSODA"  # curvature 1000 vs 1/2000
    with pytest.raises(TypeError, match="abstract"):
        type("NoGrad", (Problem,), {"dim": 2, "loss": lambda self, x: 0.0})()


def test_a_wrong_third_derivative_is_refused_and_the_default_follows_hvp():
    class Off(MatrixFactorization):
        inherits_derivatives = ("hvp",)

        def grad(self, x, out=None):
            return MatrixFactorization.grad(self, x, out=out)

        def third_derivative(self, x, a, b):
            return 0.5 * MatrixFactorization.third_derivative(self, x, a, b)

    p = MatrixFactorization.random(m=4, n=3, rank=2, width=2, seed=0)
    check_problem(p, third_derivative=True)
    with pytest.raises(ProblemError, match="Off.third_derivative is not the derivative of Off.hvp.*h\\^1"):
        check_problem(Off(p.target, 2))
    # the finite-difference default agrees with the exact product to its ε^(2/3) accuracy
    rng = np.random.default_rng(0)
    x, a, b = rng.standard_normal((3, p.dim))
    np.testing.assert_allclose(Problem.third_derivative(p, x, a, b), p.third_derivative(x, a, b),
                               rtol=1e-8, atol=1e-8 * np.abs(p.third_derivative(x, a, b)).max())


def test_malformed_results_name_the_method():
    class Short(Problem):
        dim = 3

        def loss(self, x):
            return float(np.sum(np.asarray(x) ** 2))

        def grad(self, x, out=None):
            return 2 * np.asarray(x)[:2]

    with pytest.raises(ProblemError, match="Short.grad must return an array shaped like x, \\(3,\\), got shape \\(2,\\)"):
        check_problem(Short())


def test_a_declared_inheritance_keeps_the_parents_method():
    class Rescaled(MatrixFactorization):
        inherits_derivatives = ("hvp",)

        def grad(self, x, out=None):  # the same gradient, computed another way
            return MatrixFactorization.grad(self, x, out=out)

    assert Rescaled.hvp is MatrixFactorization.hvp and Rescaled.hessian is Problem.hessian

    class Again(Rescaled):  # a new gradient below the declaration: judged again, declaration not inherited
        def grad(self, x, out=None):
            return Rescaled.grad(self, x, out=out)

    assert Again.hvp is Problem.hvp and Again.negative_grad is Problem.negative_grad
    with pytest.raises(TypeError, match="inherits_derivatives names \\['jac'\\]"):
        type("Bad", (MatrixFactorization,), {"inherits_derivatives": ("jac",), "grad": MatrixFactorization.grad})


@pytest.mark.parametrize("kind", ["asym", "sym", "sensing", "reduced"])
def test_pgflows_factored_problems_negate_inside_their_kernel(kind):
    # their _grad_rows(negate=True) puts the sign on the small middle factors: FactoredProblem's
    # negative_grad is theirs by declaration, and equals −grad bit for bit
    from pgflow.flows import MatrixSensing, SymmetricFactorization
    from pgflow.flows.problems import FactoredProblem
    from pgflow.flows.reduction import reduced_problem
    p = {"asym": lambda: MatrixFactorization.random(m=7, n=5, rank=2, width=3, seed=0),
         "sym": lambda: SymmetricFactorization.random(m=6, rank=2, width=3, seed=0),
         "sensing": lambda: MatrixSensing.random(6, 5, 2, 3, 40, seed=0),
         "reduced": lambda: reduced_problem(MatrixFactorization.random(m=30, n=20, rank=2, width=3, seed=0))}[kind]()
    assert type(p).negative_grad is FactoredProblem.negative_grad
    x = np.random.default_rng(1).standard_normal((2, p.dim))
    np.testing.assert_array_equal(p.negative_grad(x), -p.grad(x))
    np.testing.assert_array_equal(p.negative_grad(x[0]), -p.grad(x[0]))


class DecayMixin:
    """A mixin adding (λ/2)‖x‖² to a problem's loss, with every derivative it changes."""

    lam = 0.3

    def loss(self, x):
        return super().loss(x) + 0.5 * self.lam * float(np.sum(np.asarray(x) ** 2))

    def grad(self, x, out=None):
        g = MatrixFactorization.grad(self, x) + self.lam * np.asarray(x)
        if out is None:
            return g
        out[...] = g
        return out

    def hvp(self, x, v):
        return MatrixFactorization.hvp(self, x, v) + self.lam * np.asarray(v)


def test_a_gradient_from_a_mixin_is_the_one_every_consumer_uses():
    # the mixin comes before MatrixFactorization in the MRO: MatrixFactorization's −∇f (its own _grad_rows,
    # declared for it) was written for another gradient and is replaced, so the flow and GD minimize the
    # decayed loss
    from pgflow.flows import GradientFlow, gradient_descent, init, integrate

    class Decayed(DecayMixin, MatrixFactorization):
        pass

    assert Decayed.negative_grad is Problem.negative_grad and Decayed.third_derivative is Problem.third_derivative
    base = MatrixFactorization.random(m=6, n=5, rank=2, width=2, seed=0)
    p = Decayed(base.target, 2)
    check_problem(p)
    x0 = init.gaussian(p, 0.5, seed=1)
    np.testing.assert_array_equal(GradientFlow(p)(0.0, x0), -p.grad(x0))
    flow = integrate(GradientFlow(p), x0, 200.0, rtol=1e-10)
    gd = gradient_descent(p, x0, 0.05, 4000)
    assert np.linalg.norm(p.grad(flow.final)) < 1e-8 and np.linalg.norm(p.grad(gd.final)) < 1e-8
    assert np.linalg.norm(base.grad(flow.final)) > 1e-3  # not the undecayed minimizer


def test_a_negative_grad_that_is_not_minus_grad_is_refused():
    class Stale(MatrixFactorization):
        inherits_derivatives = ("negative_grad", "hvp")  # a false declaration: its grad is not the parent's

        def loss(self, x):
            return 2 * MatrixFactorization.loss(self, x)

        def grad(self, x, out=None):
            return 2 * MatrixFactorization.grad(self, x)

    p = MatrixFactorization.random(m=6, n=5, rank=2, width=2, seed=0)
    with pytest.raises(ProblemError, match=r"Stale.negative_grad is not −Stale.grad"):
        check_problem(Stale(p.target, 2), hvp=False)
