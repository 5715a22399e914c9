"""pgflow: gradient flow, perturbed gradient flow and gradient descent on low-rank matrix problems.

One import name for everything::

    import pgflow
    problem = pgflow.MatrixFactorization.random(m=40, n=30, rank=3, width=5, seed=0)
    run = pgflow.integrate(pgflow.GradientFlow(problem), pgflow.init.gaussian(problem, 1e-3, seed=1), 12.0)

The main API of the dynamics layer is re-exported here; the layers themselves are
:mod:`pgflow.flows` (problems, flows, integration, gradient descent), :mod:`pgflow.analysis`
(comparisons, discretization, stability, symbolic derivatives, claims, sweeps) and
:mod:`pgflow.figures` (the figure gallery); :mod:`pgflow.cli` is the ``pgflow`` command.
"""

import importlib.abc as _abc
import importlib.util as _util
import os as _os
import sys as _sys

_LAYERS = ("flows", "analysis", "figures")


class _CheckoutLayers(_abc.MetaPathFinder):
    """Finds pgflow.flows, pgflow.analysis and pgflow.figures in the top folders of a checkout.

    Installed, setuptools maps those folders under pgflow and this finder is never used. Imported
    from a checkout's top folder instead (``python -m pytest`` puts it first on sys.path, so this
    folder is the pgflow found), the layers are this folder's siblings.
    """

    def __init__(self, root: str):
        self.root = root

    def find_spec(self, fullname, path=None, target=None):
        package, _, layer = fullname.partition(".")
        if package != __name__ or layer not in _LAYERS:
            return None
        folder = _os.path.join(self.root, layer)
        return _util.spec_from_file_location(fullname, _os.path.join(folder, "__init__.py"),
                                             submodule_search_locations=[folder])


_checkout = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if not _os.path.isdir(_os.path.join(__path__[0], "flows")) and \
        _os.path.isfile(_os.path.join(_checkout, "flows", "__init__.py")) and \
        not any(isinstance(finder, _CheckoutLayers) for finder in _sys.meta_path):
    _sys.meta_path.append(_CheckoutLayers(_checkout))

from .flows import *  # noqa: E402,F401,F403  (the main API, listed in flows.__all__)
from .flows import __all__ as _api  # noqa: E402
from .flows.version import package_version as _package_version  # noqa: E402

__version__ = _package_version()
__all__ = ["__version__", *_api]
