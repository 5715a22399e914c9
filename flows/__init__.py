"""pgflow's dynamics layer: problems, initial states, flows, integration and gradient descent."""

from . import exact, init, monitors
from .descent import DivergenceError, gradient_descent
from .dynamics import GradientFlow
from .integrate import METHODS, Event, IntegrationError, integrate, loss_below
from .problems import MatrixFactorization, SymmetricFactorization
from .targets import LowRankTarget, as_target
from .trajectory import Trajectory

__all__ = ["DivergenceError", "Event", "GradientFlow", "IntegrationError", "LowRankTarget", "METHODS",
           "MatrixFactorization", "SymmetricFactorization", "Trajectory", "as_target", "exact",
           "gradient_descent", "init", "integrate", "loss_below", "monitors"]
