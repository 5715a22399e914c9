"""pgflow's dynamics layer: problems, initial states, flows, integration and gradient descent.

Modules, from the bottom up (each imports only modules on the lines above it):

- ``checks``, ``seeds``, ``files``, ``version``, ``rk``, ``stiffness``, ``subspace``: argument checks,
  seeding, atomic files, the installed version, scipy's explicit Runge–Kutta steppers done in place,
  the stiffness test of ``method="auto"``, the bases and states of reduced runs;
- ``blas``, ``targets``, ``trajectory``, ``base``, ``events``: BLAS thread control, low-rank targets Σ,
  the result type, the problem protocol (:class:`Problem`), events;
- ``problems``, ``ode``: factorization problems, plain ODEs;
- ``operators``, ``init``, ``monitors``, ``exact``, ``perturbations``: measurement operators, initial
  states, monitors, closed-form solutions, perturbation models;
- ``sensing``, ``proof_monitors``, ``dynamics``, ``reduction``: sensing and completion, the proofs'
  quantities, the vector fields (gradient flow, ScaledGD's flow, modified flow, perturbed gradient
  flow), the exact subspace reduction of factorization runs (U = Q_U C, V = Q_V D);
- ``integration``, ``descent``: integrating a flow with scipy's solvers, gradient descent as
  explicit Euler on a flow;
- ``piecewise``, ``emergence``: integration restarted at the jumps of a perturbation, incremental
  learning.
"""

from . import emergence, events, exact, init, monitors, operators, perturbations, proof_monitors, reduction, seeds
from .descent import gradient_descent, minibatch_gradient_descent
from .checks import NonFiniteWarning
from .failures import DivergenceError, NonFiniteMonitor, ToleranceNotMet
from .dynamics import GradientFlow, ModifiedFlow, PerturbedGradientFlow, ScaledGradientFlow
from .emergence import emergence_events, emergence_report
from .base import Problem, ProblemError, check_problem
from .events import Event, loss_below
from .integration import METHODS, BudgetExceeded, IntegrationError, choose_method, integrate
from .ode import ODE
from .operators import DenseOperator, EntrySampling, RankOneOperator, rip_estimate
from .perturbations import (DiscretizationError, FixedPerturbation, FunctionPerturbation, MinibatchSensingError,
                            RandomPerturbation, SensingError, measurement_noise)
from .piecewise import integrate_piecewise
from .problems import FactoredProblem, MatrixFactorization, SymmetricFactorization
from .sensing import MatrixCompletion, MatrixSensing
from .targets import LowRankTarget, as_target
from .trajectory import Dynamics, SolverStats, Trajectory

__all__ = ["BudgetExceeded", "DenseOperator", "DiscretizationError", "DivergenceError", "Dynamics", "EntrySampling",
           "Event", "ODE", "Problem", "ProblemError", "check_problem", "events",
           "FactoredProblem", "FixedPerturbation", "FunctionPerturbation", "GradientFlow", "IntegrationError",
           "LowRankTarget", "METHODS", "MatrixCompletion", "MatrixFactorization", "MatrixSensing",
           "MinibatchSensingError", "ModifiedFlow", "PerturbedGradientFlow", "RandomPerturbation", "RankOneOperator",
           "ScaledGradientFlow", "SensingError", "SolverStats", "SymmetricFactorization", "Trajectory", "as_target",
           "choose_method", "emergence", "emergence_events", "emergence_report", "exact", "gradient_descent", "init",
           "integrate", "integrate_piecewise", "loss_below", "measurement_noise", "minibatch_gradient_descent",
           "monitors", "operators", "perturbations", "proof_monitors", "reduction", "rip_estimate", "seeds",
           "NonFiniteMonitor", "NonFiniteWarning", "ToleranceNotMet"]
