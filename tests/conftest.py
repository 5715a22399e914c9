import os
import sys

import numpy as np
import pytest

# run from a source tree without installing, as well as from an installed package
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import matplotlib  # noqa: E402

matplotlib.use("Agg")


def taylor_slope(fun, x, v, order_term, hs=None):
    """Fitted slope of log|remainder| against log h, for the remainder that ``order_term`` leaves."""
    hs = np.logspace(-1, -4, 7) if hs is None else hs
    rem = [abs(fun(x + h * v) - order_term(h)) for h in hs]
    return np.polyfit(np.log(hs), np.log(rem), 1)[0]


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
