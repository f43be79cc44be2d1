"""The ``Optimizer`` base class: parameter groups, per-parameter state, ``zero_grad``, and
``state_dict`` / ``load_state_dict`` in PyTorch's format.

Subclasses implement ``step``. The base class wraps every subclass's ``step`` so that it runs
under ``ds.no_grad()`` (updates are not recorded by autograd) and so that learning-rate
schedulers can tell whether ``optimizer.step()`` was called before ``scheduler.step()``.

Updates are written straight into the parameters' arrays (``p._data``) with in-place ufuncs
(``out=``) taken from the array's module (numpy or cupy), so one update costs a handful of
vectorized calls per parameter, on the CPU and on the GPU alike.
"""
from __future__ import annotations

import functools
import math
import numbers
import warnings
from collections import defaultdict
from itertools import chain

import numpy as np

from ..autodiff import backend
from ..autodiff.grad_mode import no_grad
from ..autodiff.tensor import Tensor

__all__ = ["Optimizer", "required"]


class _RequiredParameter:
    """Marks an option a parameter group must give (e.g. SGD's ``lr`` in old PyTorch)."""

    def __repr__(self):
        return "<required parameter>"


required = _RequiredParameter()


def _wrap_step(fn):
    @functools.wraps(fn)
    def step(self, *args, **kwargs):
        self._opt_called = True
        with no_grad():
            return fn(self, *args, **kwargs)
    step._diffsim_wrapped = True
    return step


class Optimizer:
    """Base class of all optimizers, as ``torch.optim.Optimizer``.

    Args:
        params: an iterable of Tensors (one parameter group), of ``(name, Tensor)`` pairs
            (as ``module.named_parameters()`` gives), or of dicts, each a parameter group
            ``{"params": iterable of Tensors, <option>: value, ...}`` whose options override
            ``defaults`` for that group.
        defaults: the default value of each option (``lr``, ``momentum``, ...).

    Attributes:
        param_groups: list of dicts, each with ``"params"`` (a list of Tensors) and every option.
        state: ``state[p]`` is a dict of per-parameter buffers (Tensors) and counters (numbers),
            keyed by the parameter Tensor itself.
        defaults: the options' default values.

    Parameters must be floating-point leaf tensors; one tensor may appear in one group only.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        fn = cls.__dict__.get("step")
        if fn is not None and not getattr(fn, "_diffsim_wrapped", False):
            cls.step = _wrap_step(fn)

    def __init__(self, params, defaults):
        if not isinstance(defaults, dict):
            raise TypeError(f"{type(self).__name__}: defaults must be a dict, got {type(defaults).__name__}")
        self.defaults = defaults
        self.state = defaultdict(dict)
        self.param_groups = []
        self._opt_called = False
        if isinstance(params, Tensor):
            raise TypeError(
                f"{type(self).__name__}: params should be an iterable of Tensors or dicts, but got a "
                f"single Tensor (shape {list(params.shape)}); pass [tensor] or module.parameters()")
        if isinstance(params, (dict, str)):
            raise TypeError(f"{type(self).__name__}: params should be an iterable of Tensors or dicts, "
                            f"got a {type(params).__name__}; pass a list of parameter-group dicts")
        param_groups = list(params)
        if len(param_groups) == 0:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]
        for group in param_groups:
            self.add_param_group(group)

    # ------------------------------------------------------------------ groups
    def add_param_group(self, param_group):
        """Add a parameter group (a dict with ``"params"`` and optional per-group options); options
        not given take the optimizer's defaults. Useful for fine-tuning (unfreezing layers)."""
        name = type(self).__name__
        if not isinstance(param_group, dict):
            raise TypeError(f"{name}.add_param_group: param_group must be a dict, got "
                            f"{type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError(f"{name}.add_param_group: param_group has no 'params' key")
        group = dict(param_group)
        params = group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError(f"{name}: parameters must be given as an ordered collection (list, tuple, "
                            "generator), not a set, whose order changes between runs")
        else:
            params = list(params)
        names = None
        if params and all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in params):
            names = [p[0] for p in params]
            params = [p[1] for p in params]
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"{name}: can only optimize Tensors, but parameter {i} of the group is a "
                                f"{type(p).__name__}")
            if not p.is_floating_point():
                raise TypeError(f"{name}: can only optimize floating-point Tensors, but parameter {i} "
                                f"(shape {list(p.shape)}) has dtype {p.dtype}")
            if not (p.is_leaf or p.retains_grad):
                raise ValueError(f"{name}: can't optimize a non-leaf Tensor (parameter {i}, shape "
                                 f"{list(p.shape)}); optimize the leaf it was computed from, or "
                                 "detach().requires_grad_() it")
        if len(set(map(id, params))) != len(params):
            warnings.warn(f"{name}: a parameter group contains duplicate parameters; each occurrence "
                          "will be updated (remove the duplicates)", UserWarning, stacklevel=3)
        group["params"] = params
        if names is not None:
            group["param_names"] = names
        for key, default in self.defaults.items():
            if default is required and key not in group:
                raise ValueError(f"{name}: parameter group didn't specify a value of required "
                                 f"optimization parameter {key!r}")
            group.setdefault(key, default)
        seen = set()
        for g in self.param_groups:
            seen.update(map(id, g["params"]))
        if not seen.isdisjoint(map(id, params)):
            raise ValueError(f"{name}: some parameters appear in more than one parameter group")
        self.param_groups.append(group)
        self._init_group_state(group)

    def _init_group_state(self, group):
        """Hook for optimizers that create state eagerly (Adagrad)."""

    # ------------------------------------------------------------------ gradients
    def zero_grad(self, set_to_none: bool = True):
        """Reset the gradients of all optimized parameters: set ``p.grad = None`` (default; saves
        memory and lets the next backward write fresh gradients) or, with ``set_to_none=False``,
        fill the existing ``p.grad`` with zeros in place."""
        for group in self.param_groups:
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    if g.grad_fn is not None:
                        g.detach_()
                    else:
                        g.requires_grad_(False)
                    try:
                        g._data[...] = 0
                        g._version[0] += 1
                    except ValueError:      # a read-only (broadcast) gradient array
                        p.grad = Tensor._make(backend.get_xp(g._data).zeros_like(g._data),
                                              False, None, 0)

    def step(self, closure=None):
        """Perform one optimization step. ``closure`` (optional for most optimizers, required by
        LBFGS) re-evaluates the model and returns the loss; it runs with gradients enabled."""
        raise NotImplementedError(f"{type(self).__name__} does not implement step()")

    # ------------------------------------------------------------------ state dicts
    def state_dict(self):
        """The optimizer's state in PyTorch's format::

            {"state": {0: {"step": 3, "exp_avg": Tensor, ...}, 1: {...}},
             "param_groups": [{"lr": 0.01, ..., "params": [0, 1]}, ...]}

        Parameters are named by their index in the order of ``param_groups`` (the tensors
        themselves are not saved). State values are Tensors, Python numbers, or lists of these;
        the Tensors are the optimizer's own buffers (not copies, as in PyTorch): save or
        ``copy.deepcopy`` the dict before stepping again if you need a snapshot.
        """
        mapping = {}
        start = 0
        groups = []
        for g in self.param_groups:
            packed = {k: v for k, v in g.items() if k != "params"}
            for i, p in enumerate(g["params"], start):
                mapping.setdefault(id(p), i)
            packed["params"] = [mapping[id(p)] for p in g["params"]]
            start += len(packed["params"])
            groups.append(packed)
        state = {(mapping[id(k)] if isinstance(k, Tensor) else k): v for k, v in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Load a state from :meth:`state_dict` (or from a file written by ``ds.save``).

        The saved groups must match this optimizer's groups in number and size; the saved
        parameter indices are matched to this optimizer's parameters in order. Tensors in the
        state are copied, cast to the parameter's dtype (floating-point buffers) and moved to its
        device; group options (``lr`` ...) are restored, the ``params`` lists are kept.
        """
        name = type(self).__name__
        if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError(f"{name}.load_state_dict: expected a dict with keys 'state' and "
                             f"'param_groups' (from optimizer.state_dict()), got "
                             f"{sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__}")
        groups = self.param_groups
        saved_groups = list(state_dict["param_groups"])
        if len(groups) != len(saved_groups):
            raise ValueError(f"{name}.load_state_dict: loaded state dict has {len(saved_groups)} "
                             f"parameter group(s), but the optimizer has {len(groups)}")
        for i, (g, s) in enumerate(zip(groups, saved_groups)):
            if len(g["params"]) != len(s["params"]):
                raise ValueError(f"{name}.load_state_dict: loaded state dict contains a parameter group "
                                 f"(group {i}) of {len(s['params'])} parameter(s) that doesn't match the "
                                 f"size of the optimizer's group ({len(g['params'])} parameter(s))")
        id_map = dict(zip(chain.from_iterable(_as_int_list(s["params"]) for s in saved_groups),
                          chain.from_iterable(g["params"] for g in groups)))
        new_state = defaultdict(dict)
        for k, v in state_dict["state"].items():
            key = _as_int(k)
            if key in id_map:
                p = id_map[key]
                new_state[p] = {sk: _cast(p, sv, sk) for sk, sv in v.items()}
            else:
                new_state[k] = _deep_copy(v)
        new_groups = []
        for g, s in zip(groups, saved_groups):
            ng = {k: (list(v) if k == "param_names" else _plain(v)) for k, v in s.items() if k != "params"}
            if "param_names" not in s and "param_names" in g:
                ng["param_names"] = g["param_names"]
            ng["params"] = g["params"]
            new_groups.append(ng)
        self.state = new_state
        self.param_groups = new_groups
        self._after_load()

    def _after_load(self):
        """Hook for optimizers that cache things derived from param_groups."""

    # ------------------------------------------------------------------ misc
    def __repr__(self):
        lines = [type(self).__name__ + " ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(group):
                if key not in ("params", "param_names"):
                    lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)


# ---------------------------------------------------------------------- helpers for load_state_dict

def _as_int(k):
    if isinstance(k, str) and k.lstrip("-").isdigit():     # keys that went through a text format
        return int(k)
    if isinstance(k, (np.integer,)):
        return int(k)
    return k


def _as_int_list(ids):
    if isinstance(ids, Tensor):
        ids = ids.tolist()
    elif isinstance(ids, np.ndarray):
        ids = ids.tolist()
    return [_as_int(i) for i in ids]


def _plain(v):
    """Group options as plain Python values (numbers, bools, strings, tuples), as the optimizers
    read them; loaders may hand back 0-d arrays/Tensors or lists for tuples."""
    if isinstance(v, Tensor):
        v = v.tolist() if v.ndim else v.item()
    elif isinstance(v, np.ndarray):
        v = v.tolist()
    elif isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, list):
        return tuple(_plain(x) for x in v)
    if isinstance(v, tuple):
        return tuple(_plain(x) for x in v)
    return v


def _deep_copy(v):
    if isinstance(v, Tensor):
        return Tensor._make(v._data.copy(), False, None, 0)
    if isinstance(v, dict):
        return {k: _deep_copy(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return type(v)(_deep_copy(x) for x in v)
    return v


def _cast(param, value, key=None):
    """Deep-copy a state value; Tensors (and arrays) go to ``param``'s device, floating-point ones
    to its dtype (the step counter ``step`` stays a number)."""
    if key == "step":
        if isinstance(value, (Tensor, np.ndarray, np.generic)):
            value = float(np.asarray(value))
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return value
    if isinstance(value, np.ndarray) or backend.is_array(value):
        value = Tensor._make(value, False, None, 0)
    if isinstance(value, Tensor):
        data = backend.move(value._data, param.device)
        if data.dtype.kind == "f" and data.dtype != param._data.dtype:
            data = data.astype(param._data.dtype)
        elif data is value._data:
            data = data.copy()
        return Tensor._make(data, False, None, 0)
    if isinstance(value, dict):
        return {k: _cast(param, v, k) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cast(param, v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


# ---------------------------------------------------------------------- helpers for the algorithms

def _check_number(opt, key, value, lo=0.0, lo_open=False):
    """Validate a hyper-parameter like PyTorch ('Invalid learning rate: -1')."""
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(f"{opt}: Tensor {key} must be 1-element, got shape {list(value.shape)}")
        value = value.item()
    if not isinstance(value, numbers.Real) or math.isnan(value):
        raise ValueError(f"{opt}: invalid {key}: {value!r}")
    if (value <= lo) if lo_open else (value < lo):
        raise ValueError(f"{opt}: invalid {key}: {value} (must be {'>' if lo_open else '>='} {lo})")


def _scalar(v):
    """A group option as a Python float (a 1-element Tensor lr is allowed, as in PyTorch)."""
    if type(v) is float:
        return v
    if isinstance(v, Tensor):
        return float(v.item())
    return float(v)


def _grad_array(p, opt):
    """The raw gradient array of ``p`` (None if it has no gradient); checks shape and device."""
    g = p.grad
    if g is None:
        return None
    gd = g._data
    d = p._data
    if gd.shape != d.shape:
        raise RuntimeError(f"{opt}.step: gradient shape {list(gd.shape)} doesn't match its "
                           f"parameter's shape {list(d.shape)}")
    if type(gd) is not type(d):
        raise RuntimeError(f"{opt}.step: gradient on {g.device} but parameter (shape "
                           f"{list(d.shape)}) on {p.device}")
    if gd.dtype != d.dtype:
        gd = gd.astype(d.dtype)
    return gd


def _eval_closure(closure):
    """Run ``closure`` with gradients enabled (``step`` itself runs under no_grad); its loss."""
    if closure is None:
        return None
    from ..autodiff.grad_mode import enable_grad
    with enable_grad():
        return closure()


def _directed_grad(g, d, xp, maximize, weight_decay):
    """The gradient an update uses: negated when maximizing, plus ``weight_decay * d`` (L2,
    coupled weight decay). Never modifies ``g`` in place."""
    if maximize:
        g = xp.negative(g)
    if weight_decay != 0:
        t = xp.multiply(d, weight_decay)
        t += g
        g = t
    return g


def _zeros_like_param(p, fill=0.0):
    d = p._data
    xp = backend.get_xp(d)
    if fill == 0:
        return Tensor._make(xp.zeros_like(d), False, None, 0)
    return Tensor._make(xp.full_like(d, fill), False, None, 0)


def _buffer(a):
    """Wrap a raw array as a state Tensor."""
    return Tensor._make(a, False, None, 0)
