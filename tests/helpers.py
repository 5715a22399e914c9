"""Helpers for the tests (importable as ``helpers``: pytest puts this folder on sys.path through conftest.py)."""

import numpy as np


def taylor_slope(fun, x, v, order_term, hs=None):
    """Fitted slope of log|remainder| against log h, for the remainder that ``order_term`` leaves."""
    hs = np.logspace(-1, -4, 7) if hs is None else hs
    rem = [abs(fun(x + h * v) - order_term(h)) for h in hs]
    return np.polyfit(np.log(hs), np.log(rem), 1)[0]
