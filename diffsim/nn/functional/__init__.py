"""``diffsim.nn.functional`` (``import diffsim.nn.functional as F``): the functional forms of
layers, activations and losses, built from diffsim ops (and custom ops where speed needs)."""
from .activation import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .linear import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .normalization import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403
from .sampling import *  # noqa: F401,F403
from ...autodiff import log_softmax, softmax  # noqa: F401  (also F.softmax, as in PyTorch)
