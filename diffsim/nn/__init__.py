"""``diffsim.nn``: Module, Parameter, layers, activations, losses, init and utilities.

Built on ``diffsim.autodiff`` only; a PyTorch training script ports by changing ``torch``
to ``diffsim``."""
from . import functional, init, utils  # noqa: F401
from .layers.activation import *  # noqa: F401,F403
from .layers.attention import *  # noqa: F401,F403
from .layers.container import *  # noqa: F401,F403
from .layers.conv import *  # noqa: F401,F403
from .layers.dropout import *  # noqa: F401,F403
from .layers.linear import *  # noqa: F401,F403
from .layers.loss import *  # noqa: F401,F403
from .layers.normalization import *  # noqa: F401,F403
from .layers.pooling import *  # noqa: F401,F403
from .layers.rnn import *  # noqa: F401,F403
from .layers.sparse import *  # noqa: F401,F403
from .module import Module  # noqa: F401
from .parameter import Parameter  # noqa: F401
