"""A run: one trajectory with the problem, dynamics, perturbation and step size a claim needs to
evaluate on it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from ...flows import MatrixFactorization, perturbations
from .. import symbolic as S



@dataclass(frozen=True, eq=False)
class Run:
    """One trajectory with what a claim needs to evaluate on it.

    Parameters
    ----------
    problem : MatrixFactorization
        Supplies Σ and its singular vectors. A problem with its own symbolic gradient (a
        :class:`~pgflow.analysis.symbolic.FormulaProblem`: ``symbolic_gradient`` and
        ``symbolic_values()``) is modelled along that gradient: ``derivative(q)`` follows its flows
        and its GD step.
    trajectory : flows.Trajectory
    dynamics : {"gf", "pgf_residual", "pgf_additive", "modified", "gd"}
    perturbation : callable ``E(t, x)``, optional
        Required for PGF runs: an (m, n) matrix (residual form) or a flat (dim,) vector (additive
        form), e.g. a model of :mod:`pgflow.flows.perturbations`; its ``bound(t, x)`` (if any) is ``E_bound``.
    step_size : float, optional
        η: required for "gd" and "modified".
    label : str
        Name in reports (default: dynamics and seed from the trajectory's provenance).

    Raises
    ------
    ValueError
        The label contradicts what made the trajectory: its record ``trajectory.dynamics`` names
        other dynamics, another GD variant or step size, a perturbed GD, or the problem is not a
        :class:`~pgflow.flows.MatrixFactorization` (whose GF is modelled only as the residual-form
        PGF of the factorization of X*: a sensing gradient flow with its
        :class:`~pgflow.flows.SensingError`). A trajectory without a record (``dynamics`` None) is
        taken at its label; :func:`check` then compares the derivatives with the saved states.

    Notes
    -----
    A run of gradient descent ("gd") checks *discrete* claims: ``derivative(q)`` on it is the
    one-step difference quotient (q(x₊) − q(x))/η with x₊ = x − η∇f(x), not a time derivative.
    """

    problem: object
    trajectory: object
    dynamics: str
    perturbation: object = None
    step_size: float | None = None
    label: str = ""
    gradient: tuple | None = field(default=None, init=False)
    """The problem's own symbolic (G_U, G_V), which ``derivative(q)`` follows (None: the gradient of
    ½‖UVᵀ − Σ‖²_F)."""

    def __post_init__(self):
        if self.dynamics not in S.DYNAMICS:
            raise ValueError(f"dynamics must be one of {S.DYNAMICS}, got {self.dynamics!r}")
        # Σ, its singular vectors and complements (two SVDs): checked here, reused by every claim
        object.__setattr__(self, "_problem_values", S.problem_values(self.problem))
        if tuple(map(tuple, self.trajectory.layout)) != tuple((a, tuple(b)) for a, b in self.problem.layout):
            raise ValueError(f"trajectory layout {self.trajectory.layout} does not match the problem's "
                             f"{self.problem.layout}")
        if self.dynamics.startswith("pgf") and not callable(self.perturbation):
            raise ValueError(f"a {self.dynamics} run needs its perturbation E(t, x)")
        if self.dynamics in ("gd", "modified"):
            if self.step_size is None or not self.step_size > 0:
                raise ValueError(f"a {self.dynamics} run needs its step_size η > 0, got {self.step_size!r}")
        _check_against_record(self)
        object.__setattr__(self, "gradient", _own_gradient(self.problem))
        if not self.label:
            seed = self.trajectory.meta.get("seed", self.trajectory.meta.get("init_seed"))
            object.__setattr__(self, "label", self.dynamics + ("" if seed is None else f" seed {seed}"))
        object.__setattr__(self, "_perturbation_memo", {})

    @classmethod
    def of(cls, trajectory, source, label: str = "") -> "Run":
        """A run from a trajectory and what made it: a flow object, or the problem for GD.

        The dynamics come from the trajectory's own record (``trajectory.dynamics.name``: "gf",
        "pgf_residual", "pgf_additive", "modified", "gd"); ``source`` supplies the problem and, for a
        perturbed flow, the perturbation. A gradient flow of a sensing problem is the residual-form
        PGF of the factorization of X* with E the sensing error (𝒜*𝒜 − I)(X* − UVᵀ) + 𝒜*ξ
        (``docs/math/dynamics.md``).

        Raises
        ------
        ValueError
            Dynamics the claim language does not model: GD other than unperturbed simultaneous GD,
            a modified flow of another variant, ScaledGD's flow, or a problem other than
            factorization (or a sensing gradient flow).
        """
        problem = getattr(source, "problem", source)
        record = trajectory.dynamics
        if record is None:
            raise TypeError("the trajectory records no dynamics (trajectory.dynamics is None): build a Run with "
                            "dynamics= explicitly")
        factorization = type(problem) is MatrixFactorization or _own_gradient(problem) is not None
        if record.kind == "gf" and hasattr(problem, "operator") and not factorization:
            noise = bool(np.any(problem.noise_vector))
            return cls(problem, trajectory, "pgf_residual", perturbation=perturbations.SensingError(problem, noise),
                       label=label)
        if not factorization:
            raise ValueError(f"claims model the flow of ½‖UVᵀ − Σ‖²_F (or a sensing gradient flow as its PGF); "
                             f"got a {record.name} trajectory of a {type(problem).__name__}")
        if record.kind == "gd":
            if record.variant != "simultaneous" or record.perturbed:
                what = f"{record.variant} GD" + (" with a perturbation" if record.perturbed else "")
                raise ValueError(f"derivative claims on GD need unperturbed simultaneous GD on a MatrixFactorization "
                                 f"(the exact step x₊ = x − η∇f is derived for that loss), got {what}")
            return cls(problem, trajectory, "gd", step_size=float(record.step_size), label=label)
        if record.kind == "modified":
            if record.variant != "simultaneous":
                raise ValueError("only the modified flow of simultaneous GD on a MatrixFactorization is modelled")
            return cls(problem, trajectory, "modified", step_size=float(record.step_size), label=label)
        if record.kind == "pgf":
            if not callable(getattr(source, "perturbation", None)):
                raise ValueError(f"a {record.name} run needs its perturbation: pass the PerturbedGradientFlow that "
                                 f"made it as the source")
            return cls(problem, trajectory, record.name, perturbation=source.perturbation, label=label)
        if record.kind == "gf":
            return cls(problem, trajectory, "gf", label=label)
        raise ValueError(f"claims do not model {record.name} trajectories")

    def values(self, needed: set, params: Mapping) -> dict:
        """Numeric values of the leaves ``needed`` on every saved state (time-first)."""
        traj, dyn = self.trajectory, self.dynamics
        env = {**self._problem_values, "U": traj.U, "V": traj.V, "t": np.asarray(traj.t, dtype=float)}
        if self.gradient is not None:  # the leaves of the problem's own gradient: its parameters, 𝒜, y
            env.update(self.problem.symbolic_values())
        sigma = np.asarray(self.problem.target.sigma)
        env.update(sigma_1=float(sigma[0]), sigma_r=float(sigma[-1]), kappa=float(sigma[0] / sigma[-1]))
        if "eta" in needed:
            if self.step_size is None:
                raise ValueError(f"eta is not defined on run {self.label!r} (dynamics {dyn!r}, no step size)")
            env["eta"] = float(self.step_size)
        if {"E", "E_U", "E_V", "E_bound"} & needed:
            env.update(self._perturbation_values(needed))
        for key in needed:
            if key not in env and key in params:
                if params[key] is None:
                    raise ValueError(f"parameter {key} has no value: set it with Claim.with_params({key}=...) or "
                                     f"check(..., params={{'{key}': ...}})")
                env[key] = float(params[key])
        return env

    def _perturbation_values(self, needed: set) -> dict:
        traj, dyn, p = self.trajectory, self.dynamics, self.problem
        m_, n_ = p.target.shape
        k_ = p.width
        out = {}
        residual_names, additive_names = {"E"} & needed, {"E_U", "E_V"} & needed
        if dyn == "gf":  # GF is the PGF with E ≡ 0
            out.update(E=np.zeros((m_, n_)), E_U=np.zeros((m_, k_)), E_V=np.zeros((p.target.n, k_)), E_bound=0.0)
            return out
        if (residual_names and dyn != "pgf_residual") or (additive_names and dyn != "pgf_additive") \
                or ("E_bound" in needed and not dyn.startswith("pgf")):
            name = sorted(residual_names | additive_names | ({"E_bound"} & needed))[0]
            raise ValueError(f"{name} is not defined on run {self.label!r} (dynamics {dyn!r})")
        memo = self._perturbation_memo  # E(t, x) on every state is the costly part: once per run
        if "E" not in memo:
            memo["E"] = np.stack([np.asarray(self.perturbation(ti, xi), dtype=float)
                                  for ti, xi in zip(traj.t, traj.x)])
        if dyn == "pgf_residual":
            out["E"] = memo["E"]
        else:
            out["E_U"], out["E_V"] = p.unpack(memo["E"])
        if "E_bound" in needed:
            if "E_bound" not in memo:
                bound = getattr(self.perturbation, "bound", None)
                memo["E_bound"] = np.array([float(bound(ti, xi)) if bound else np.nan
                                            for ti, xi in zip(traj.t, traj.x)])
            out["E_bound"] = memo["E_bound"]
        return out


def _own_gradient(problem):
    """The problem's symbolic (G_U, G_V) when it has one (a formula problem), else None."""
    gradient = getattr(problem, "symbolic_gradient", None)
    return None if gradient is None else tuple(gradient)


def _description(value) -> str:
    return json.dumps(value, sort_keys=True, default=repr)


def _check_against_record(run: Run) -> None:
    """Refuse a dynamics label that contradicts the trajectory's own record (or the problem)."""
    problem, label = run.problem, run.dynamics
    record = getattr(run.trajectory, "dynamics", None)
    where = f"Run(..., dynamics={label!r})"
    if type(problem) is not MatrixFactorization and _own_gradient(problem) is None:
        # only a sensing gradient flow is modelled, as the residual PGF of the factorization of X*
        if not (hasattr(problem, "operator") and label == "pgf_residual"
                and isinstance(run.perturbation, perturbations.SensingError)
                and run.perturbation.problem is problem
                and run.perturbation.noise == bool(np.any(problem.noise_vector))
                and (record is None or (record.kind == "gf"))):
            raise ValueError(f"{where}: claims model the flows of ½‖UVᵀ − Σ‖²_F; a {type(problem).__name__} is "
                             f"modelled only through its gradient flow, as the residual-form PGF of the "
                             f"factorization of X* with E its SensingError (use Run.of(trajectory, flow)); "
                             f"the trajectory's record is {None if record is None else record.name!r}")
        return
    if record is None:
        return
    if record.name != label:
        raise ValueError(f"{where} contradicts the trajectory, which records dynamics {record.name!r} "
                         f"(trajectory.dynamics = {record}); use Run.of(trajectory, source)")
    if label in ("gd", "modified"):
        if record.variant not in (None, "simultaneous"):
            raise ValueError(f"{where}: the trajectory is {record.variant} {'GD' if label == 'gd' else 'modified flow'};"
                             f" the claim language models the simultaneous scheme only")
        if label == "gd" and record.perturbed:
            raise ValueError(f"{where}: the trajectory is perturbed GD; derivative claims on GD use the exact "
                             f"unperturbed step x₊ = x − η∇f")
        if record.step_size is not None and not np.isclose(float(record.step_size), float(run.step_size),
                                                           rtol=1e-12, atol=0):
            raise ValueError(f"{where}: step_size {run.step_size!r} contradicts the trajectory's recorded step "
                             f"size {record.step_size!r}")
    if label.startswith("pgf") and record.perturbation is not None:
        describe = getattr(run.perturbation, "describe", None)
        if callable(describe) and _description(describe()) != _description(record.perturbation):
            raise ValueError(f"{where}: the perturbation {describe()} is not the one the trajectory records "
                             f"({record.perturbation})")
