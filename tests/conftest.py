"""Fixtures shared by every test; helper functions live in ``helpers.py`` (import it as ``helpers``)."""

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
