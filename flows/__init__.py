"""pgflow's dynamics layer: problems, initial states, flows, integration and gradient descent."""

from . import emergence, exact, init, monitors, operators, perturbations, proof_monitors
from .descent import DivergenceError, gradient_descent, minibatch_gradient_descent
from .dynamics import GradientFlow, ModifiedFlow, ScaledGradientFlow
from .emergence import emergence_events, emergence_report
from .integrate import METHODS, Event, IntegrationError, choose_method, integrate, loss_below
from .operators import DenseOperator, EntrySampling, RankOneOperator, rip_estimate
from .perturbations import (DiscretizationError, FixedPerturbation, FunctionPerturbation, MinibatchSensingError,
                            PerturbedGradientFlow, RandomPerturbation, SensingError, integrate_piecewise,
                            measurement_noise)
from .problems import MatrixFactorization, SymmetricFactorization
from .sensing import MatrixCompletion, MatrixSensing
from .targets import LowRankTarget, as_target
from .trajectory import Trajectory

__all__ = ["DenseOperator", "DiscretizationError", "DivergenceError", "EntrySampling", "Event", "FixedPerturbation",
           "FunctionPerturbation", "GradientFlow", "IntegrationError", "LowRankTarget", "METHODS",
           "MatrixCompletion", "MatrixFactorization", "MatrixSensing", "MinibatchSensingError", "ModifiedFlow",
           "PerturbedGradientFlow", "RandomPerturbation", "RankOneOperator", "ScaledGradientFlow", "SensingError",
           "SymmetricFactorization", "Trajectory", "as_target", "choose_method", "emergence", "emergence_events",
           "emergence_report", "exact", "gradient_descent", "init", "integrate", "integrate_piecewise",
           "loss_below", "measurement_noise", "minibatch_gradient_descent", "monitors", "operators",
           "perturbations", "proof_monitors", "rip_estimate"]
