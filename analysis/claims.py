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

Hypotheses (``assume``) state what the theorems assume: the descent lemma for GD, η‖V‖² ≤ 2 for
J₊ = J(I − ηVᵀV) to contract, and Ye & Du's small start. :data:`FALSE_VARIANTS` holds one deliberately
false variant of each claim; :func:`pgflow.analysis.bounds.falsify` finds no counterexample to the
catalogue and breaks every variant (docs/math/claims.md lists the measured results).

Derivations of the signal/noise bounds (residual-form PGF, J = Φ⊥ᵀU, U₁ = ΦᵀU,
``docs/math/proof-quantities.md``)::

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
_TERMS_V = "fro(U) * (fro(Sigma) + fro(U) * fro(V) + fro(E))"  # the same for V̇
# the rate of a part of U (‖ΦᵀU‖², ‖Φ⊥ᵀU‖²) is a sum ⟨U, P U̇⟩ of products of U with U̇: rounding of order
# ε‖U‖‖U̇‖ remains where the part itself vanishes (an aligned or orthogonal state)
_RATE_U = f"fro(U) * {_TERMS_U}"
_RATE_V = f"fro(V) * {_TERMS_V}"
# Φ⊥ᵀΣ and Ψ⊥ᵀΣᵀ vanish only to rounding, so derivatives of the noise parts carry an error ~ ε σ₁ ‖V‖
_PERP_SIGMA_V = "(1 + kappa) * sigma_1 * fro(V)"
_PERP_SIGMA_U = "(1 + kappa) * sigma_1 * fro(U)"
# ... and a GD quotient (‖J₊‖ − ‖J‖)/η carries ε‖J‖/η ≤ ε·5σ₁‖J‖ of rounding even where J̇ = 0 (at a saddle)
_PERP_SIGMA_VJ = "(1 + kappa) * sigma_1 * (fro(V) + fro(J))"
_PERP_SIGMA_UK = "(1 + kappa) * sigma_1 * (fro(U) + fro(K))"
# Ye & Du's Stage 1 starts small: their invariants hold with high probability over a random start of scale ε,
# not for every start. pgflow states them for starts with ‖U₀‖²_F + ‖V₀‖²_F ≤ σ_r/10 (and the entries of
# size ε where ε enters), a regime the falsifier searched without finding a counterexample (docs/math/claims.md).
_STAGE_ONE = ["initial(fro(U)**2 + fro(V)**2) <= sigma_r / 10"]
_START_SCALE = "initial(fro(U)**2 + fro(V)**2) <= 2 * (m + n) * k * eps**2"
# the descent lemma for one GD step: η·L ≤ 2 with L ≥ ‖U_s‖² + ‖V_s‖² + ‖R_s‖ on the segment x − sη∇f, s ∈ [0, 1]
_DESCENT_LEMMA = ("eta * ((norm(U) + eta * norm(G_U))**2 + (norm(V) + eta * norm(G_V))**2 + norm(R)"
                  " + eta * (norm(G_U) * norm(V) + norm(U) * norm(G_V)) + eta**2 * norm(G_U) * norm(G_V)) <= 2")


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
        # both sides are ⟨R, RVVᵀ + UUᵀR⟩-sized sums that cancel down to ‖∇f‖² near a saddle
        Claim("derivative(loss) == -grad_sq", name="loss_identity", rel_allowance=1e-10,
              allowance="1e-12 * fro(R)**2 * (fro(U)**2 + fro(V)**2)", dynamics=("gf",),
              description="d/dt f = −‖∇f‖² along GF (docs/math/invariants.md)"),
        # at a critical point the rate is 0 and rounding of the same ⟨R, ·⟩ sums decides its sign
        Claim("derivative(loss) <= 0", name="loss_decreases", rel_allowance=1e-9, dynamics=("gf", "gd"),
              allowance="1e-12 * fro(R)**2 * (fro(U)**2 + fro(V)**2)", assume={"gd": _DESCENT_LEMMA},
              description="f is non-increasing along GF; along GD wherever η·L ≤ 2 for the smoothness L of f on "
                          "the step's segment (the descent lemma; L ≤ ‖U‖² + ‖V‖² + ‖R‖ at a state, bounded "
                          "along the segment by the terms of the hypothesis)"),
        # Ye & Du, Stage 1 (GD from a small init with η ≤ 1/(3σ₁); docs/math/proof-quantities.md)
        Claim("eta <= 1 / (3 * sigma_1)", name="ye_du_step_size", dynamics=("gd",),
              description="the hypothesis of Ye & Du's Stage 1: η ≤ 1/(3σ₁)"),
        Claim("lambda_max(A * A.T - 2 * Sigma_star) <= 0", name="ye_du_AAt_upper", rel_allowance=1e-9,
              dynamics=("gf", "gd"), assume=_STAGE_ONE,
              description="AAᵀ ⪯ 2Σ (Ye & Du, Stage 1 invariant), from a small start"),
        Claim("lambda_min(A * A.T) >= eps**2 / (c**2 * r)", name="ye_du_AAt_lower", params={"c": None, "eps": None},
              dynamics=("gf", "gd"),
              assume=[*_STAGE_ONE, _START_SCALE, "initial(lambda_min(A * A.T)) >= eps**2 / (c**2 * r)"],
              description="ε²/(c²d)·I ⪯ AAᵀ (Ye & Du, Stage 1; d = rank r, ε the init scale, c their constant), "
                          "from a small start of scale ε where it holds initially"),
        Claim("fro(B) <= 2 * c * r * eps", name="ye_du_B_bound", params={"c": None, "eps": None},
              dynamics=("gf", "gd"), assume=[*_STAGE_ONE, _START_SCALE, "initial(fro(B)) <= c * r * eps"],
              description="‖B‖_F ≤ 2c·d·ε (Ye & Du, Stage 1; d = rank r, ε the init scale), from a small start of "
                          "scale ε with ‖B₀‖_F ≤ c·d·ε"),
        Claim("derivative(norm(J)) <= 0", name="ye_du_J_nonincreasing", allowance=f"1e-12 * {_PERP_SIGMA_VJ}",
              rel_allowance=1e-9, dynamics=("gf", "gd"), assume={"gd": "eta * norm(V)**2 <= 2"},
              description="‖J‖ = ‖Φ⊥ᵀU‖ is non-increasing (Ye & Du): J̇ = −JVᵀV along GF, and one GD step is "
                          "J₊ = J(I − ηVᵀV), a contraction exactly when η‖V‖² ≤ 2"),
        Claim("derivative(norm(K)) <= 0", name="ye_du_K_nonincreasing", allowance=f"1e-12 * {_PERP_SIGMA_UK}",
              rel_allowance=1e-9, dynamics=("gf", "gd"), assume={"gd": "eta * norm(U)**2 <= 2"},
              description="‖K‖ = ‖Ψ⊥ᵀV‖ is non-increasing (Ye & Du): K̇ = −KUᵀU along GF, K₊ = K(I − ηUᵀU) on "
                          "GD, a contraction exactly when η‖U‖² ≤ 2"),
        # docs/math/proof-quantities.md: signal/noise along residual-form PGF
        Claim("fro(derivative(U1) - (Sigma_star * V1 - U1 * VtV + Phi.T * E * V)) == 0", name="signal_U_identity",
              allowance=f"1e-12 * {_TERMS_U}", dynamics=_FLOWS_WITH_E,
              description="d/dt(ΦᵀU) = Σ*(ΨᵀV) − (ΦᵀU)(VᵀV) + ΦᵀEV (docs/math/proof-quantities.md)"),
        Claim("fro(derivative(J) - (-J * VtV + Phi_perp.T * E * V)) == 0", name="noise_U_identity",
              allowance=f"1e-12 * {_TERMS_U}", dynamics=_FLOWS_WITH_E,
              description="d/dt(Φ⊥ᵀU) = −(Φ⊥ᵀU)(VᵀV) + Φ⊥ᵀEV (docs/math/proof-quantities.md)"),
        Claim("derivative(noise_U_sq) <= -2 * lambda_min(VtV) * noise_U_sq + 2 * sqrt(noise_U_sq) * norm(E) * fro(V)",
              name="noise_U_rate", allowance=f"1e-12 * (sqrt(noise_U_sq) * {_PERP_SIGMA_V} + {_RATE_U})",
              rel_allowance=1e-9,
              dynamics=_FLOWS_WITH_E,
              description="the noise part of U decays at rate 2λ_min(VᵀV) up to the perturbation (any E)"),
        Claim("derivative(noise_V_sq) <= -2 * lambda_min(UtU) * noise_V_sq + 2 * sqrt(noise_V_sq) * norm(E) * fro(U)",
              name="noise_V_rate", allowance=f"1e-12 * (sqrt(noise_V_sq) * {_PERP_SIGMA_U} + {_RATE_V})",
              rel_allowance=1e-9,
              dynamics=_FLOWS_WITH_E,
              description="mirror of noise_U_rate for V (any E)"),
        Claim("derivative(signal_U_sq) >= 2 * trace(U1.T * Sigma_star * V1) - 2 * lambda_max(VtV) * signal_U_sq"
              " - 2 * sqrt(signal_U_sq) * norm(E) * fro(V)", name="signal_U_rate", rel_allowance=1e-9,
              allowance=f"1e-12 * {_RATE_U}",
              dynamics=_FLOWS_WITH_E,
              description="the signal part of U grows at least like 2tr(U₁ᵀΣ*V₁) − 2λ_max(VᵀV)‖U₁‖²_F, up to the "
                          "perturbation (any E)"),
        Claim("norm(E) <= E_bound", name="perturbation_within_bound", rel_allowance=1e-9,
              dynamics=("pgf_residual",),
              description="the perturbation respects its model's bound (‖E‖ ≤ ‖E‖_F ≤ bound for either norm)"),
        Claim("derivative(noise_U_sq) <= -2 * lambda_min(VtV) * noise_U_sq + 2 * sqrt(noise_U_sq) * E_bound * fro(V)",
              name="noise_U_rate_bounded", allowance=f"1e-12 * (sqrt(noise_U_sq) * {_PERP_SIGMA_V} + {_RATE_U})",
              rel_allowance=1e-9,
              dynamics=("pgf_residual",),
              description="noise_U_rate with the perturbation model's bound in place of ‖E‖ (bounded perturbation)"),
    ]
    return {c.name: c for c in claims}


CATALOGUE: dict[str, Claim] = _catalogue()
"""Name -> Claim."""


def _false_variants() -> dict[str, Claim]:
    """For each catalogue claim, a deliberately false variant (a dropped term or hypothesis, a wrong
    sign or constant) that :func:`pgflow.analysis.bounds.falsify` must break."""
    def variant(name, statement=None, **changes):
        base = CATALOGUE[name]
        return replace(base, statement=base.statement if statement is None else statement, name=f"{name}_false",
                       expect=False, **changes)

    variants = [
        variant("imbalance_conserved", dynamics=("pgf_additive",), allowance="1e-12 * fro(U) * fro(V) * fro(R)",
                description="additive PGF does not conserve UᵀU − VᵀV (E_U, E_V break the symmetry)"),
        variant("imbalance_drift", dynamics=("modified",),
                description="the modified flow drifts by η(G_UᵀG_U − G_VᵀG_V) per unit time"),
        variant("imbalance_gd_step", "fro(derivative(imbalance) - eta * (G_U.T * G_U + G_V.T * G_V)) == 0",
                description="a sign error in the GD imbalance step"),
        variant("loss_identity", "derivative(loss) == -2 * grad_sq", description="a factor 2 too many"),
        variant("loss_decreases", dynamics=("gd",), assume=(),
                description="GD without the descent-lemma hypothesis: large starts make f grow"),
        variant("ye_du_step_size", "eta <= 1 / (10 * sigma_1)", description="a step-size bound the runs exceed"),
        variant("ye_du_AAt_upper", assume=(), description="AAᵀ ⪯ 2Σ* from any start (large starts break it)"),
        variant("ye_du_AAt_lower", assume=(), description="the lower bound from any start (A = 0 breaks it)"),
        variant("ye_du_B_bound", assume=(), description="the B bound from any start"),
        variant("ye_du_J_nonincreasing", dynamics=("gd",), assume=(),
                description="GD without η‖V‖² ≤ 2: J₊ = J(I − ηVᵀV) grows"),
        variant("ye_du_K_nonincreasing", dynamics=("gd",), assume=(),
                description="GD without η‖U‖² ≤ 2: K₊ = K(I − ηUᵀU) grows"),
        variant("signal_U_identity", "fro(derivative(U1) - (Sigma_star * V1 - U1 * VtV)) == 0",
                dynamics=("pgf_residual",), description="the perturbation term ΦᵀEV dropped"),
        variant("noise_U_identity", "fro(derivative(J) - (-J * VtV)) == 0", dynamics=("pgf_residual",),
                description="the perturbation term Φ⊥ᵀEV dropped"),
        variant("noise_U_rate", "derivative(noise_U_sq) <= -2 * lambda_min(VtV) * noise_U_sq",
                dynamics=("pgf_residual",), description="the perturbation term dropped"),
        variant("noise_V_rate", "derivative(noise_V_sq) <= -2 * lambda_min(UtU) * noise_V_sq",
                dynamics=("pgf_residual",), description="the perturbation term dropped"),
        variant("signal_U_rate", "derivative(signal_U_sq) >= 2 * trace(U1.T * Sigma_star * V1) - 2 * lambda_min(VtV)"
                " * signal_U_sq - 2 * sqrt(signal_U_sq) * norm(E) * fro(V)", description="λ_min where λ_max belongs"),
        variant("perturbation_within_bound", "norm(E) <= E_bound / 2", description="half the model's bound"),
        variant("noise_U_rate_bounded", "derivative(noise_U_sq) <= -2 * lambda_max(VtV) * noise_U_sq + 2 * "
                "sqrt(noise_U_sq) * E_bound * fro(V)", description="λ_max where λ_min belongs"),
    ]
    return {v.name.removesuffix("_false"): v for v in variants}


FALSE_VARIANTS: dict[str, Claim] = _false_variants()
"""Catalogue name -> a deliberately false variant of that claim (``expect=False``), for the falsifier's tests
and ``pgflow check --falsify``."""


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
