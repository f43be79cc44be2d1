"""diffsim.autodiff: Tensor, reverse-mode autograd, ops, functional transforms, checkpointing.

Everything here is re-exported as ``import diffsim as ds``.
"""
from . import dtypes
from .backend import Device, cuda
from .backend import Device as device
from .creation import (arange, as_tensor, asarray, empty, empty_like, eye, from_dlpack, from_numpy,
                       full, full_like, linspace, logspace, meshgrid, ones, ones_like, tensor, zeros,
                       zeros_like)
from .dtypes import (bool_, double, float16, float32, float64, get_default_dtype, half, int8, int16,
                     int32, int64, long, promote_types, result_type, set_default_dtype, uint8)
from .function import Function, once_differentiable
from .grad_mode import enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled
from .ops import *  # noqa: F401,F403
from .ops import __all__ as _ops_all
from .random import (Generator, bernoulli, default_generator, initial_seed, manual_seed, multinomial,
                     normal, rand, rand_like, randint, randint_like, randn, randn_like, randperm, seed)
from .tensor import Tensor
from . import autograd  # noqa: E402
from . import linalg  # noqa: E402  (ds.linalg)

bool = bool_  # noqa: A001  (ds.bool, as torch.bool)


def is_tensor(obj) -> bool:
    """True if ``obj`` is a diffsim Tensor."""
    return isinstance(obj, Tensor)
from . import func  # noqa: E402
from . import checkpoint  # noqa: E402  (a callable module: ds.checkpoint(fn, *args))
from .checkpoint import checkpoint_binomial, checkpoint_sequential  # noqa: E402
from . import fft  # noqa: E402,F401  (ds.fft: differentiable rfftn/irfftn/fftn/ifftn)
