r"""Monitors for the quantities convergence proofs track (docs/math/proof-quantities.md), in the style of :mod:`pgflow.flows.monitors`.

Signal/noise split
    With X* = Φ diag(σ) Ψᵀ (the problem's target) and complements Φ⊥, Ψ⊥: the signal
    ``signal_U_min`` = σ_min(ΦᵀU), ``signal_V_min`` = σ_min(ΨᵀV), the noise ``noise_U_norm`` =
    ‖Φ⊥ᵀU‖_op, ``noise_V_norm`` = ‖Ψ⊥ᵀV‖_op (computed as ‖U − Φ(ΦᵀU)‖ without forming Φ⊥), and the
    principal angles between col(U) and col(Φ). (The symbolic catalogue's ``signal_U_sq`` and
    ``noise_U_sq`` are the squared Frobenius norms ‖ΦᵀU‖²_F and ‖Φ⊥ᵀU‖²_F.)
Ye & Du
    Rotate Σ to diagonal form: Ũ = [Φ Φ⊥]ᵀU, Ṽ = [Ψ Ψ⊥]ᵀV. The top r×k blocks are ΦᵀU and ΨᵀV, the
    rest J = Φ⊥ᵀU, K = Ψ⊥ᵀV. Then A = (ΦᵀU + ΨᵀV)/2, B = (ΦᵀU − ΨᵀV)/2 and
    P = diag(σ) − AAᵀ + BBᵀ (r×r, symmetric), so that the top block of Σ − UVᵀ is P + ABᵀ − BAᵀ.
    For m ≠ n or k ≠ r nothing changes: the blocks are r×k and Σ's top block is diag(σ).

Every function returns ``fn(t, x) -> float`` (``principal_angles``: an array) bound to a problem
with a target and factors U, V; the dict-returning helpers bundle them for ``integrate(monitors=...)``.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import subspace_angles

from .monitors import Monitor


def _split(problem, x):
    """(ΦᵀU, U − Φ(ΦᵀU), ΨᵀV, V − Ψ(ΨᵀV))."""
    t = problem.target
    U, V = problem.factors(x)
    return t.Phi.T @ U, _off(t.Phi, U), t.Psi.T @ V, _off(t.Psi, V)


def _off(Q, F) -> np.ndarray:
    """F − Q(QᵀF): the part of F outside col(Q), with the norms of Q⊥ᵀF."""
    return F - Q @ (Q.T @ F)


def _sigma_min(A) -> float:
    """Smallest of the min(rows, cols) singular values."""
    return float(np.linalg.svd(A, compute_uv=False)[-1])


def signal_U_min(problem) -> Monitor:
    """σ_min(ΦᵀU): how much of the target's column space U has picked up."""
    return lambda t, x: _sigma_min(problem.target.Phi.T @ problem.factors(x)[0])


def signal_V_min(problem) -> Monitor:
    """σ_min(ΨᵀV)."""
    return lambda t, x: _sigma_min(problem.target.Psi.T @ problem.factors(x)[1])


def noise_U_norm(problem) -> Monitor:
    """‖Φ⊥ᵀU‖_op = ‖U − Φ(ΦᵀU)‖_op."""
    return lambda t, x: float(np.linalg.norm(_off(problem.target.Phi, problem.factors(x)[0]), 2))


def noise_V_norm(problem) -> Monitor:
    """‖Ψ⊥ᵀV‖_op = ‖V − Ψ(ΨᵀV)‖_op."""
    return lambda t, x: float(np.linalg.norm(_off(problem.target.Psi, problem.factors(x)[1]), 2))


def principal_angles(problem) -> Monitor:
    """Principal angles (radians, increasing) between col(U) and col(Φ): min(k, r) of them.

    By ``scipy.linalg.subspace_angles``, which takes an orthonormal basis of the numerical column
    space of U (so a rank-deficient U is handled) and small angles from sines (accurate to rounding,
    where arccos of cosines is not). If rank(U) < min(k, r) the missing angles are NaN.
    """
    q = min(problem.width, problem.target.rank)

    def fn(t, x):
        U = problem.factors(x)[0]
        angles = np.sort(subspace_angles(U, problem.target.Phi)) if np.any(U) else np.empty(0)
        return np.pad(angles[:q], (0, q - min(q, angles.size)), constant_values=np.nan)
    return fn


def signal_noise(problem) -> dict[str, Monitor]:
    """signal_U_min, signal_V_min, noise_U_norm, noise_V_norm and principal_angles, bound to ``problem``."""
    return {"signal_U_min": signal_U_min(problem), "signal_V_min": signal_V_min(problem),
            "noise_U_norm": noise_U_norm(problem), "noise_V_norm": noise_V_norm(problem),
            "principal_angles": principal_angles(problem)}


def ye_du_blocks(problem, x) -> dict[str, np.ndarray]:
    """A, B (r×k), P (r×r), and the off-blocks J = U − Φ(ΦᵀU), K = V − Ψ(ΨᵀV) at state x.

    J and K are kept in the original coordinates (m×k, n×k): they have the norms, singular values
    and Gram matrices JᵀJ, KᵀK of Φ⊥ᵀU and Ψ⊥ᵀV without forming Φ⊥, Ψ⊥.
    """
    SU, J, SV, K = _split(problem, x)
    A, B = 0.5 * (SU + SV), 0.5 * (SU - SV)
    P = np.diag(problem.target.sigma) - A @ A.T + B @ B.T
    return {"A": A, "B": B, "P": P, "J": J, "K": K}


def _ye_du(problem, fn) -> Monitor:
    return lambda t, x: float(fn(ye_du_blocks(problem, x)))


def ye_du(problem) -> dict[str, Monitor]:
    """Ye & Du's quantities: ‖A‖, ‖B‖_F, λ_min(AAᵀ), λ_min(P), ‖J‖, ‖K‖ (operator norms unless _F)."""
    return {"A_norm": _ye_du(problem, lambda b: np.linalg.norm(b["A"], 2)),
            "B_fro": _ye_du(problem, lambda b: np.linalg.norm(b["B"])),
            "AAt_lambda_min": _ye_du(problem, lambda b: np.linalg.eigvalsh(b["A"] @ b["A"].T)[0]),
            "P_lambda_min": _ye_du(problem, lambda b: np.linalg.eigvalsh(b["P"])[0]),
            "J_norm": _ye_du(problem, lambda b: np.linalg.norm(b["J"], 2)),
            "K_norm": _ye_du(problem, lambda b: np.linalg.norm(b["K"], 2))}


__all__ = ["noise_U_norm", "noise_V_norm", "principal_angles", "signal_U_min", "signal_V_min", "signal_noise",
           "ye_du", "ye_du_blocks"]
