r"""A catalogue of claims from the seed papers and ``docs/math``, ready for
:func:`pgflow.analysis.bounds.check`.

Each entry is a :class:`pgflow.analysis.bounds.Claim` with its dynamics and source; parameters
without a default (None) must be set first::

    from pgflow.analysis import claims
    claim = claims.get("ye_du_B_bound", c=1.0, eps=1e-3)

Extend the catalogue by building your own ``Claim`` (same language, see :mod:`pgflow.analysis.bounds`)
or with ``dataclasses.replace(claims.CATALOGUE[name], ...)``.

Allowances: identities hold up to rounding in the terms they cancel, so their ``allowance`` is 1e-12
times the size of those terms; derivatives of the noise parts J = Φ⊥ᵀU, K = Ψ⊥ᵀV carry the rounding
of Φ⊥ᵀΣ = 0 (1e-12·σ₁‖V‖); bounds that can be attained carry ``rel_allowance`` = 1e-9.

Derivations of the signal/noise bounds (residual-form PGF, J = Φ⊥ᵀU, U₁ = ΦᵀU,
``docs/math/proof-quantities.md``):
d/dt‖J‖²_F = −2 tr(JᵀJ VᵀV) + 2⟨J, Φ⊥ᵀEV⟩ ≤ −2λ_min(VᵀV)‖J‖²_F + 2‖J‖_F ‖E‖ ‖V‖_F, and
d/dt‖U₁‖²_F = 2 tr(U₁ᵀΣ*V₁) − 2 tr(U₁ᵀU₁VᵀV) + 2⟨U₁, ΦᵀEV⟩
            ≥ 2 tr(U₁ᵀΣ*V₁) − 2λ_max(VᵀV)‖U₁‖²_F − 2‖U₁‖_F ‖E‖ ‖V‖_F,
with ‖·‖ the spectral norm (⟨X, PEV⟩ ≤ ‖X‖_F ‖E‖ ‖V‖_F for an orthonormal-column P). They hold
for *every* E; with a perturbation model's own bound ``E_bound`` ≥ ‖E‖ in place of ‖E‖ they hold
whenever the model keeps its promise (``perturbation_within_bound``).
"""

from __future__ import annotations

from dataclasses import replace

from .bounds import Claim

_FLOWS_WITH_E = ("gf", "pgf_residual")
_TERMS_U = "fro(V) * (fro(Sigma) + fro(U) * fro(V) + fro(E))"  # size of ΣV, UVᵀV and EV: what U̇ cancels
# Φ⊥ᵀΣ and Ψ⊥ᵀΣᵀ vanish only to rounding, so derivatives of the noise parts carry an error ~ ε σ₁ ‖V‖
_PERP_SIGMA_V = "(1 + kappa) * sigma_1 * fro(V)"
_PERP_SIGMA_U = "(1 + kappa) * sigma_1 * fro(U)"


def _catalogue() -> dict[str, Claim]:
    claims = [
        # docs/math/dynamics.md, invariants.md: conservation and the exact identities
        Claim("fro(derivative(imbalance)) == 0", name="imbalance_conserved",
              allowance="1e-12 * fro(U) * fro(V) * (fro(R) + fro(E))", dynamics=_FLOWS_WITH_E,
              description="the symbolic identity d/dt(UᵀU − VᵀV) = 0 along GF and residual-form PGF, for every E "
                          "(docs/math/invariants.md); the derivative is identically 0, so this checks the "
                          "derivation, not the trajectory (imbalance_drift does)"),
        # the imbalance is exactly conserved, so on a trajectory its drift is the integrator's error, which at
        # rtol 1e-10 stays far below 1e-8 of the size of UᵀU and VᵀV (a run at rtol 1e-3 exceeds it)
        Claim("fro(imbalance - initial(imbalance)) <= 1e-8 * (fro(UtU) + fro(VtV))", name="imbalance_drift",
              dynamics=_FLOWS_WITH_E,
              description="UᵀU − VᵀV stays at its initial value along the computed GF and residual-form PGF "
                          "trajectories, up to integration error (docs/math/invariants.md)"),
        Claim("fro(derivative(imbalance) - eta * (G_U.T * G_U - G_V.T * G_V)) == 0", name="imbalance_gd_step",
              allowance="1e-12 * (fro(U) * fro(V) * fro(R) + eta * (fro(G_U)**2 + fro(G_V)**2))",
              dynamics=("gd",),
              description="one GD step changes UᵀU − VᵀV by exactly η²(G_UᵀG_U − G_VᵀG_V) "
                          "(docs/math/invariants.md)"),
        Claim("derivative(loss) == -grad_sq", name="loss_identity", rel_allowance=1e-10, dynamics=("gf",),
              description="d/dt f = −‖∇f‖² along GF (docs/math/invariants.md)"),
        Claim("derivative(loss) <= 0", name="loss_decreases", rel_allowance=1e-9, dynamics=("gf", "gd"),
              description="f is non-increasing along GF; along GD for steps small enough for the local "
                          "smoothness (the descent lemma), e.g. η ≤ 1/(3σ₁) from a small init"),
        # Ye & Du, Stage 1 (GD from a small init with η ≤ 1/(3σ₁); docs/math/proof-quantities.md)
        Claim("eta <= 1 / (3 * sigma_1)", name="ye_du_step_size", dynamics=("gd",),
              description="the hypothesis of Ye & Du's Stage 1: η ≤ 1/(3σ₁)"),
        Claim("lambda_max(A * A.T - 2 * Sigma_star) <= 0", name="ye_du_AAt_upper", rel_allowance=1e-9,
              dynamics=("gf", "gd"),
              description="AAᵀ ⪯ 2Σ (Ye & Du, Stage 1 invariant)"),
        Claim("lambda_min(A * A.T) >= eps**2 / (c**2 * r)", name="ye_du_AAt_lower", params={"c": None, "eps": None},
              dynamics=("gf", "gd"),
              description="ε²/(c²d)·I ⪯ AAᵀ (Ye & Du, Stage 1; d = rank r, ε the init scale, c their constant)"),
        Claim("fro(B) <= 2 * c * r * eps", name="ye_du_B_bound", params={"c": None, "eps": None},
              dynamics=("gf", "gd"),
              description="‖B‖_F ≤ 2c·d·ε (Ye & Du, Stage 1; d = rank r, ε the init scale)"),
        Claim("derivative(norm(J)) <= 0", name="ye_du_J_nonincreasing", allowance=f"1e-12 * {_PERP_SIGMA_V}",
              rel_allowance=1e-9, dynamics=("gf", "gd"),
              description="‖J‖ = ‖Φ⊥ᵀU‖ is non-increasing (Ye & Du, for η ≤ 1/(3σ₁))"),
        Claim("derivative(norm(K)) <= 0", name="ye_du_K_nonincreasing", allowance=f"1e-12 * {_PERP_SIGMA_U}",
              rel_allowance=1e-9, dynamics=("gf", "gd"),
              description="‖K‖ = ‖Ψ⊥ᵀV‖ is non-increasing (Ye & Du, for η ≤ 1/(3σ₁))"),
        # docs/math/proof-quantities.md: signal/noise along residual-form PGF
        Claim("fro(derivative(U1) - (Sigma_star * V1 - U1 * VtV + Phi.T * E * V)) == 0", name="signal_U_identity",
              allowance=f"1e-12 * {_TERMS_U}", dynamics=_FLOWS_WITH_E,
              description="d/dt(ΦᵀU) = Σ*(ΨᵀV) − (ΦᵀU)(VᵀV) + ΦᵀEV (docs/math/proof-quantities.md)"),
        Claim("fro(derivative(J) - (-J * VtV + Phi_perp.T * E * V)) == 0", name="noise_U_identity",
              allowance=f"1e-12 * {_TERMS_U}", dynamics=_FLOWS_WITH_E,
              description="d/dt(Φ⊥ᵀU) = −(Φ⊥ᵀU)(VᵀV) + Φ⊥ᵀEV (docs/math/proof-quantities.md)"),
        Claim("derivative(noise_U_sq) <= -2 * lambda_min(VtV) * noise_U_sq + 2 * sqrt(noise_U_sq) * norm(E) * fro(V)",
              name="noise_U_rate", allowance=f"1e-12 * sqrt(noise_U_sq) * {_PERP_SIGMA_V}", rel_allowance=1e-9,
              dynamics=_FLOWS_WITH_E,
              description="the noise part of U decays at rate 2λ_min(VᵀV) up to the perturbation (any E)"),
        Claim("derivative(noise_V_sq) <= -2 * lambda_min(UtU) * noise_V_sq + 2 * sqrt(noise_V_sq) * norm(E) * fro(U)",
              name="noise_V_rate", allowance=f"1e-12 * sqrt(noise_V_sq) * {_PERP_SIGMA_U}", rel_allowance=1e-9,
              dynamics=_FLOWS_WITH_E,
              description="mirror of noise_U_rate for V (any E)"),
        Claim("derivative(signal_U_sq) >= 2 * trace(U1.T * Sigma_star * V1) - 2 * lambda_max(VtV) * signal_U_sq"
              " - 2 * sqrt(signal_U_sq) * norm(E) * fro(V)", name="signal_U_rate", rel_allowance=1e-9,
              dynamics=_FLOWS_WITH_E,
              description="the signal part of U grows at least like 2tr(U₁ᵀΣ*V₁) − 2λ_max(VᵀV)‖U₁‖²_F, up to the "
                          "perturbation (any E)"),
        Claim("norm(E) <= E_bound", name="perturbation_within_bound", rel_allowance=1e-9,
              dynamics=("pgf_residual",),
              description="the perturbation respects its model's bound (‖E‖ ≤ ‖E‖_F ≤ bound for either norm)"),
        Claim("derivative(noise_U_sq) <= -2 * lambda_min(VtV) * noise_U_sq + 2 * sqrt(noise_U_sq) * E_bound * fro(V)",
              name="noise_U_rate_bounded", allowance=f"1e-12 * sqrt(noise_U_sq) * {_PERP_SIGMA_V}", rel_allowance=1e-9,
              dynamics=("pgf_residual",),
              description="noise_U_rate with the perturbation model's bound in place of ‖E‖ (bounded perturbation)"),
    ]
    return {c.name: c for c in claims}


CATALOGUE: dict[str, Claim] = _catalogue()
"""Name -> Claim."""


def get(name: str, **params) -> Claim:
    """The catalogue claim ``name`` with its parameters set.

    Raises
    ------
    KeyError
        Unknown name (the message lists the catalogue).
    """
    if name not in CATALOGUE:
        raise KeyError(f"unknown claim {name!r}; the catalogue has: {', '.join(CATALOGUE)}")
    claim = CATALOGUE[name]
    return claim.with_params(**params) if params else replace(claim)
