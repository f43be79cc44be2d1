"""diffsim.optim: optimizers, learning-rate schedules, and a bridge to SciPy's minimizers.

As ``torch.optim``::

    opt = optim.Adam(model.parameters(), lr=1e-3)
    sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=100)
    for epoch in range(100):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        sched.step()

Optimizers: SGD, Adam, AdamW, Adagrad, RMSprop, LBFGS (``step(closure)``). Every optimizer
takes parameter groups, keeps per-parameter ``state``, and saves/loads its state in
PyTorch's ``state_dict`` format (so ``ds.save(opt.state_dict(), path)`` works).

``optim.minimize(fn, x0, method="L-BFGS-B", bounds=..., constraints=...)`` runs
``scipy.optimize.minimize`` on a function of Tensors with autodiff gradients.
"""
from . import lr_scheduler
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .lbfgs import LBFGS
from .minimize import minimize
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "LBFGS", "lr_scheduler",
           "minimize"]
