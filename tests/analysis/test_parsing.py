"""analysis.symbolic.parsing: expression strings are parsed, never evaluated, everywhere they are accepted."""

import pathlib
import re

import numpy as np
import pytest
import sympy as sp

from pgflow.analysis import bounds as B
from pgflow.analysis import symbolic as S
from pgflow.flows import MatrixFactorization, init

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _injections(marker: pathlib.Path):
    """Strings that run code if anything evaluates them: each would create ``marker``."""
    touch = f"open({str(marker)!r}, 'w')"
    return [
        f"__import__('os').system('touch {marker}')",
        f"{touch}",
        f"U + {touch}",
        f"(lambda: {touch})()",
        f"[{touch} for _ in (1,)]",
        f"U.__class__.__init__.__globals__['__builtins__']['open']({str(marker)!r}, 'w')",
        f"getattr(U, '__class__')",
        f"U.T.__class__",
        f"exec(\"{touch}\")",
        f"eval(\"{touch}\")",
        "U[0]",
        "Matrix([[1]])",
        f"loss if {touch} else loss",
    ]


def _entry_points(problem, x):
    """Every public function that takes an expression string, called on ``text``."""
    return {
        "compile_expr": lambda text: S.compile_expr(text),
        "explicit": lambda text: S.explicit(text),
        "vanishes": lambda text: S.vanishes(text),
        "shape_of": lambda text: S.shape_of(text),
        "is_scalar": lambda text: S.is_scalar(text),
        "directional": lambda text: S.directional(text, {S.U: S.U}),
        "directional (direction)": lambda text: S.directional(S.QUANTITIES["loss"].expr, {S.U: text}),
        "directional (leaf)": lambda text: S.directional(S.QUANTITIES["loss"].expr, {text: S.U}),
        "Componentwise": lambda text: S.Componentwise([text]),
        "verify": lambda text: S.verify(text, ("gf",)),
        "time_derivative": lambda text: S.time_derivative(text),
        "gradient": lambda text: S.gradient(text),
        "gd_step": lambda text: S.gd_step(text),
        "gd_increment": lambda text: S.gd_increment(text),
        "as_expr": lambda text: S.as_expr(text),
        "evaluate": lambda text: S.evaluate(text, problem, x),
        "parse_expression": lambda text: S.parse_expression(text),
        "Claim": lambda text: B.Claim(f"{text} <= 1"),
        "Claim allowance": lambda text: B.Claim("loss >= 0", allowance=text),
        "Claim assume": lambda text: B.Claim("loss >= 0", assume=f"{text} <= 1"),
        "Claim quantities": lambda text: B.Claim("q >= 0", quantities={"q": text}),
        "derivative": lambda text: B.derivative(text),
        "initial": lambda text: B.initial(text),
        **{f"symbolic.{f.__name__}": f for f in (S.norm, S.fro, S.trace, S.fro2, S.lambda_min, S.lambda_max,
                                                   S.sigma_min, S.sigma_max, S.nuclear_norm)},
        "top_sum": lambda text: S.top_sum(text, 1),
    }


def test_no_entry_point_executes_an_injection(tmp_path):
    problem = MatrixFactorization.random(m=4, n=3, rank=1, width=2, seed=0)
    x = init.gaussian(problem, 0.1, seed=1)
    marker = tmp_path / "executed"
    for name, call in _entry_points(problem, x).items():
        for text in _injections(marker):
            with pytest.raises((B.ClaimError, KeyError, TypeError, ValueError)):
                call(text)
            assert not marker.exists(), (name, text)


@pytest.mark.parametrize("text, offending", [
    ("__import__('os')", "__import__"),
    ("U.__class__", "U.__class__"),
    ("(lambda: 1)()", "lambda: 1"),
    ("U[0]", "U[0]"),
    ("[x for x in U]", "[x for x in U]"),
    ("__builtins__", "__builtins__"),
    ("loss if loss else loss", "loss if loss else loss"),
])
def test_code_is_a_syntax_error_naming_its_position(text, offending):
    with pytest.raises(S.ClaimSyntaxError) as info:
        S.shape_of(text)
    err = info.value
    start, end = err.span
    assert err.text[start:end] == offending
    assert isinstance(err, B.ClaimError) and isinstance(err, ValueError)


def test_strings_mean_the_matrix_language():
    # sympify read "U*V" as a product of two commuting scalars; it is the shape error it is
    assert S.shape_of("U*V.T") == (S.m, S.n)
    assert S.shape_of("U @ V.T") == (S.m, S.n)
    with pytest.raises(S.ShapeError, match=r"inner sizes k and n differ"):
        S.shape_of("U*V")
    assert S.as_expr("U.T*U - V.T*V") == S.QUANTITIES["imbalance"].expr
    assert S.vanishes("U.T*U - V.T*V - imbalance")
    assert not S.vanishes("U.T*U - V.T*V")
    p = MatrixFactorization.random(m=5, n=4, rank=2, width=2, seed=0)
    x = init.gaussian(p, 0.5, seed=1)
    assert np.isclose(float(S.evaluate("fro(U*V.T - Sigma)**2 / 2", p, x)), p.loss(x), rtol=1e-13, atol=0)
    with pytest.raises(KeyError, match="did you mean"):
        S.as_expr("nose_U_sq")


def test_compile_expr_runs_a_program_not_source():
    f = S.compile_expr("trace((U.T*U - V.T*V)**2)")
    assert "def " not in f.source and "r0 = " in f.source  # a readable listing, never executed
    U_, V_ = np.eye(3, 2), np.zeros((2, 2))
    assert float(f(U=U_, V=V_)) == 2.0


def test_library_code_has_no_eval_exec_or_sympify():
    pattern = re.compile(r"sympify\(|(^|[^.\w])(eval|exec)\(")
    found = []
    for folder in ("analysis", "flows", "figures", "pgflow"):
        for path in (ROOT / folder).rglob("*.py"):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if pattern.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found


def test_sympy_objects_and_numbers_pass_through():
    assert S.parsing.as_sympy(S.U) is S.U
    assert S.parsing.as_sympy(3) == sp.Integer(3)
    assert S.parsing.as_sympy(0.5) == sp.Float(0.5)
    with pytest.raises(TypeError):
        S.parsing.as_sympy(object())
