"""diffsim: differentiable simulation for Python.

``import diffsim as ds`` gives the autodiff tensor core (``ds.tensor``, ops, ``ds.autograd``,
``ds.func``, ``ds.checkpoint``); solvers, renderers and the neural-network toolkit live in
subpackages.
"""
from .autodiff import *  # noqa: F401,F403
from .autodiff import _ops_all, autograd, bool, cuda, dtypes  # noqa: F401
from . import testing  # noqa: F401,E402  (ds.testing.gradcheck; hypothesis loads lazily)
from . import data, io, nn, optim  # noqa: F401,E402
from .io import load, save  # noqa: F401,E402

__version__ = "0.1.0"


def __getattr__(name):
    # ds.sparse on first use (``import diffsim`` stays as fast as before)
    if name == "sparse":
        import importlib
        return importlib.import_module(".sparse", __name__)
    raise AttributeError(f"module 'diffsim' has no attribute {name!r}")
