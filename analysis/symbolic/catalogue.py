"""The catalogue of named quantities of the state, and name resolution.

A quantity's name means the same number everywhere: the monitor of the same name
(:mod:`pgflow.flows.monitors`, :mod:`pgflow.flows.proof_monitors`) evaluates the same formula.
Names of earlier versions that meant another number raise an error naming the new one
(:data:`RENAMED_QUANTITIES`).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import sympy as sp

from .calculus import gradient_of
from .spectral import FroNorm, LambdaMin, OpNorm, SigmaMin
from .vocabulary import Phi, Phi_perp, Psi, Psi_perp, Sigma, Sigma_star, U, V, fro2, shape_of


@dataclass(frozen=True)
class Quantity:
    """A named quantity of the state.

    Attributes
    ----------
    name : str
    expr : sympy expression
        In the leaves of :data:`SYMBOLS`; scalar or matrix-valued.
    description : str
        The formula in words, with its source.
    """

    name: str
    expr: sp.Basic
    description: str

    @property
    def shape(self):
        """Symbolic shape, None for a scalar."""
        return shape_of(self.expr)


def _catalogue() -> dict[str, Quantity]:
    R = Sigma - U * V.T
    U1, V1 = Phi.T * U, Psi.T * V
    J, K = Phi_perp.T * U, Psi_perp.T * V
    A, B = (U1 + V1) / 2, (U1 - V1) / 2
    D = U.T * U - V.T * V
    loss = fro2(R) / 2
    G_U, G_V = gradient_of(loss, U), gradient_of(loss, V)
    P = Sigma_star - A * A.T + B * B.T
    entries = [
        ("loss", loss, "f = ½‖UVᵀ − Σ‖²_F (docs/math/problems.md)"),
        ("R", R, "residual Σ − UVᵀ, m×n"),
        ("G_U", G_U, "∇_U f = −RV, derived symbolically from loss"),
        ("G_V", G_V, "∇_V f = −RᵀU, derived symbolically from loss"),
        ("grad_sq", fro2(G_U) + fro2(G_V), "‖∇f‖²_F = ‖G_U‖²_F + ‖G_V‖²_F"),
        ("grad_norm", sp.sqrt(fro2(G_U) + fro2(G_V)), "‖∇f‖₂ (the monitor grad_norm)"),
        ("distance", FroNorm(U * V.T - Sigma), "‖UVᵀ − Σ‖_F (the monitor distance)"),
        ("UtU", U.T * U, "UᵀU, k×k"),
        ("VtV", V.T * V, "VᵀV, k×k"),
        ("imbalance", D, "UᵀU − VᵀV, k×k; conserved by GF and residual-form PGF"),
        ("imbalance_sq", fro2(D), "‖UᵀU − VᵀV‖²_F"),
        ("imbalance_fro", FroNorm(D), "‖UᵀU − VᵀV‖_F (the monitor imbalance_fro)"),
        ("U1", U1, "ΦᵀU, r×k: the signal part of U (Ye & Du's top block)"),
        ("V1", V1, "ΨᵀV, r×k: the signal part of V"),
        ("J", J, "Φ⊥ᵀU, (m−r)×k: the noise part of U (Ye & Du's J)"),
        ("K", K, "Ψ⊥ᵀV, (n−r)×k: the noise part of V (Ye & Du's K)"),
        ("signal_U_sq", fro2(U1), "‖ΦᵀU‖²_F"),
        ("signal_V_sq", fro2(V1), "‖ΨᵀV‖²_F"),
        ("noise_U_sq", fro2(J), "‖Φ⊥ᵀU‖²_F"),
        ("noise_V_sq", fro2(K), "‖Ψ⊥ᵀV‖²_F"),
        ("signal_U_min", SigmaMin(U1), "σ_min(ΦᵀU) (the monitor signal_U_min)"),
        ("signal_V_min", SigmaMin(V1), "σ_min(ΨᵀV) (the monitor signal_V_min)"),
        ("noise_U_norm", OpNorm(J), "‖Φ⊥ᵀU‖_op (the monitor noise_U_norm)"),
        ("noise_V_norm", OpNorm(K), "‖Ψ⊥ᵀV‖_op (the monitor noise_V_norm)"),
        ("A", A, "(ΦᵀU + ΨᵀV)/2, r×k: Ye & Du's symmetric part"),
        ("B", B, "(ΦᵀU − ΨᵀV)/2, r×k: Ye & Du's asymmetric part"),
        ("P", P, "Σ* − AAᵀ + BBᵀ, r×r (Ye & Du)"),
        ("S", A * B.T - B * A.T, "ABᵀ − BAᵀ, r×r (Ye & Du); Φᵀ(Σ − UVᵀ)Ψ = P + S"),
        ("A_sq", fro2(A), "‖A‖²_F"),
        ("B_sq", fro2(B), "‖B‖²_F (Ye & Du Stage 1: ‖B‖_F ≤ 2c·d·ε)"),
        ("J_sq", fro2(J), "‖J‖²_F"),
        ("K_sq", fro2(K), "‖K‖²_F"),
        ("A_norm", OpNorm(A), "‖A‖_op (the Ye & Du monitor A_norm)"),
        ("B_fro", FroNorm(B), "‖B‖_F (the Ye & Du monitor B_fro)"),
        ("AAt_lambda_min", LambdaMin(A * A.T), "λ_min(AAᵀ) (the Ye & Du monitor AAt_lambda_min)"),
        ("P_lambda_min", LambdaMin(P), "λ_min(P) (the Ye & Du monitor P_lambda_min)"),
        ("J_norm", OpNorm(J), "‖J‖_op = ‖Φ⊥ᵀU‖_op (the Ye & Du monitor J_norm)"),
        ("K_norm", OpNorm(K), "‖K‖_op = ‖Ψ⊥ᵀV‖_op (the Ye & Du monitor K_norm)"),
    ]
    return {name: Quantity(name, expr, doc) for name, expr, doc in entries}


QUANTITIES: dict[str, Quantity] = _catalogue()
"""The named quantities; each ``expr`` is a sympy expression in :data:`SYMBOLS`."""

RENAMED_QUANTITIES = {"signal_U": "signal_U_sq", "signal_V": "signal_V_sq", "noise_U": "noise_U_sq",
                      "noise_V": "noise_V_sq"}
"""Quantity names of earlier versions -> their names now (``signal_U`` was ‖ΦᵀU‖²_F here but σ_min(ΦᵀU)
as a monitor; both now have their own names)."""


def renamed_hint(name: str) -> str:
    """" (now called 'new')" for a renamed quantity, else ""."""
    new = RENAMED_QUANTITIES.get(name)
    return f" (it is now called {new!r}: {QUANTITIES[new].description})" if new else ""


def as_expr(q):
    """A catalogue name, a :class:`Quantity`, an expression string or a sympy expression, as sympy.

    A string that is a catalogue name gives that quantity; any other string is parsed by the safe
    parser (:func:`pgflow.analysis.symbolic.parsing.parse_expression`, never ``eval``), so
    ``as_expr("U.T*U - V.T*V")`` is the imbalance. An unknown plain name is a KeyError listing the
    catalogue.
    """
    if isinstance(q, str):
        if q in QUANTITIES:
            return QUANTITIES[q].expr
        from .parsing import base_names, parse_expression  # parsing reads this catalogue

        if q.strip().isidentifier() and q.strip() not in base_names():
            close = difflib.get_close_matches(q, list(QUANTITIES), n=3)
            hint = renamed_hint(q) or (f" (did you mean {', '.join(close)}?)" if close else "")
            raise KeyError(f"unknown quantity {q!r}{hint}; known: {', '.join(QUANTITIES)}")
        return parse_expression(q)[0]
    if isinstance(q, Quantity):
        return q.expr
    if not isinstance(q, sp.Basic):
        raise TypeError(f"a quantity must be a catalogue name, a Quantity, an expression string or a sympy "
                        f"expression, got {type(q).__name__}")
    return q
