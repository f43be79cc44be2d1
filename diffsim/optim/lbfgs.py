"""L-BFGS with an optional strong-Wolfe line search, as ``torch.optim.LBFGS``.

The algorithm works on one flat vector: all parameters' gradients are concatenated, the
search direction comes from the two-loop recursion over the last ``history_size`` curvature
pairs, and steps are added back to the parameters in place. It is PyTorch's implementation
(itself after minFunc) step for step, so the iterates match PyTorch's; scalars are kept as
Python floats (float64).

Where PyTorch's version stalls or poisons the parameters, this one departs from it (and only
there; see ``_strong_wolfe``):

- a trial point whose loss or directional derivative is inf/NaN (a simulation that blew up at
  a long trial step) is treated as ``+inf``: bracketed and backed away from by bisection,
  never accepted, never extrapolated beyond, never turned into a NaN step;
- when the line search's trial budget (``max_eval`` minus the evaluations already made; 0 for
  ``max_iter=1``) runs out before any point lower than the start was found, it keeps zooming,
  up to 25 trials, until it finds one. PyTorch returns step 0 there, and since the stored step
  is then 0 no curvature pair is formed and every later ``step`` repeats the same rejected
  trial: with ``max_iter=1`` the parameters never change;
- a line search that still finds no lower point drops the curvature pairs, so that the next
  iteration restarts from steepest descent instead of repeating the same direction;
- a non-finite loss or gradient at the current parameters raises instead of producing NaN.
"""
from __future__ import annotations

import math

import numpy as np

from ..autodiff.backend import get_xp
from ..autodiff.grad_mode import enable_grad
from ..autodiff.tensor import Tensor
from .optimizer import Optimizer, _buffer, _check_number, _scalar

__all__ = ["LBFGS"]


def _cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None):
    """Minimizer of the cubic through (x1, f1, g1) and (x2, f2, g2), clipped to ``bounds``.

    As PyTorch's, with one difference: where the cubic is undefined (two equal abscissae, an
    infinite or NaN value or slope, overflow) it returns the middle of the bounds instead of
    NaN, so a line search never tries a NaN step."""
    if bounds is not None:
        xmin_bound, xmax_bound = bounds
    else:
        xmin_bound, xmax_bound = (x1, x2) if x1 <= x2 else (x2, x1)
    mid = (xmin_bound + xmax_bound) / 2.0
    if x1 == x2 or not all(map(math.isfinite, (x1, f1, g1, x2, f2, g2))):
        return mid
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1 * d1 - g1 * g2          # d1 * d1, not d1 ** 2: no OverflowError for huge d1
    if d2_square >= 0:
        d2 = math.sqrt(d2_square)
        if x1 <= x2:
            den = g2 - g1 + 2 * d2
            min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / den) if den != 0 else math.nan
        else:
            den = g1 - g2 + 2 * d2
            min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / den) if den != 0 else math.nan
        if math.isnan(min_pos):
            return mid
        return min(max(min_pos, xmin_bound), xmax_bound)
    return mid


def _dot(a, b):
    return float(get_xp(a).dot(a, b))


_LS_CAP = 25    # PyTorch's default max_ls: the most trial steps one line search may take


def _eval_point(obj_func, x, t, d):
    """Loss, flat gradient and directional derivative at ``x + t d``. A non-finite loss or slope
    (the model blew up there) reads as ``+inf``: such a point is never accepted, and it makes
    the line search backtrack instead of extrapolating further."""
    f_new, g_new = obj_func(x, t, d)
    f_new = float(f_new)
    with np.errstate(invalid="ignore", over="ignore"):     # inf/NaN gradients are expected here
        gtd_new = _dot(g_new, d)
    if not (math.isfinite(f_new) and math.isfinite(gtd_new)):
        f_new, gtd_new = math.inf, math.inf
    return f_new, g_new, gtd_new


def _strong_wolfe(obj_func, x, t, d, f, g, gtd, c1=1e-4, c2=0.9, tolerance_change=1e-9, max_ls=25):
    """Line search along ``d`` from the parameters ``x`` satisfying the strong Wolfe conditions
    (sufficient decrease ``c1``, curvature ``c2``). ``obj_func(x, t, d)`` returns the loss and flat
    gradient at ``x + t d``. Returns (loss, flat gradient, step, number of evaluations).

    PyTorch's ``_strong_wolfe`` (bracketing, then zoom by cubic interpolation), step for step
    wherever that makes progress, with these safeguards:

    - a trial point with a non-finite loss or slope counts as ``+inf`` (bracketed and backed
      away from; cubic interpolation falls back to bisection), so a simulation that blows up
      at a long trial step neither poisons the parameters with NaN nor sends the search further;
    - when ``max_ls`` trials are spent and no point lower than ``f`` has been found (``max_ls``
      is 0 when ``LBFGS(max_iter=1)``, whose ``max_eval`` is 1), the zoom goes on, up to
      ``_LS_CAP`` trials in all, until it finds a lower point or the bracket shrinks below
      ``tolerance_change``. PyTorch returns step 0 there, and the next ``step`` repeats the same
      rejected trial forever.
    """
    xp = get_xp(d)
    d_norm = float(xp.abs(d).max())
    g = g.copy()
    f_new, g_new, gtd_new = _eval_point(obj_func, x, t, d)
    ls_func_evals = 1

    t_prev, f_prev, g_prev, gtd_prev = 0, f, g, gtd
    done = False
    ls_iter = 0
    while ls_iter < max_ls:
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new.copy()], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new.copy()], [gtd_prev, gtd_new]
            break
        # interpolate
        min_step = t + 0.01 * (t - t_prev)
        max_step = t * 10
        tmp = t
        t = _cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(min_step, max_step))
        t_prev, f_prev, g_prev, gtd_prev = tmp, f_new, g_new.copy(), gtd_new
        f_new, g_new, gtd_new = _eval_point(obj_func, x, t, d)
        ls_func_evals += 1
        ls_iter += 1

    if ls_iter >= max_ls:       # reached the maximum number of iterations
        bracket, bracket_f, bracket_g = [0, t], [f, f_new], [g, g_new]
        bracket_gtd = [gtd, gtd_new]

    # zoom: refine the bracket until a point satisfies the strong Wolfe conditions
    insuf_progress = False
    low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and (ls_iter < max_ls or (ls_iter < _LS_CAP and not bracket_f[low_pos] < f)):
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = _cubic_interpolate(bracket[0], bracket_f[0], bracket_gtd[0],
                               bracket[1], bracket_f[1], bracket_gtd[1])
        # test that we are making sufficient progress
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            if insuf_progress or t >= max(bracket) or t <= min(bracket):
                if abs(t - max(bracket)) < abs(t - min(bracket)):
                    t = max(bracket) - eps
                else:
                    t = min(bracket) + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False
        f_new, g_new, gtd_new = _eval_point(obj_func, x, t, d)
        ls_func_evals += 1
        ls_iter += 1
        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low_pos]:
            bracket[high_pos], bracket_f[high_pos] = t, f_new
            bracket_g[high_pos], bracket_gtd[high_pos] = g_new.copy(), gtd_new
            low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0:
                bracket[high_pos], bracket_f[high_pos] = bracket[low_pos], bracket_f[low_pos]
                bracket_g[high_pos], bracket_gtd[high_pos] = bracket_g[low_pos], bracket_gtd[low_pos]
            bracket[low_pos], bracket_f[low_pos] = t, f_new
            bracket_g[low_pos], bracket_gtd[low_pos] = g_new.copy(), gtd_new

    t = bracket[low_pos]
    return bracket_f[low_pos], bracket_g[low_pos], t, ls_func_evals


def _arr(v):
    return v._data if isinstance(v, Tensor) else v


def _num(v):
    """A state scalar as a Python float (state loaded from a file may hold 0-d Tensors)."""
    if v is None or isinstance(v, float):
        return v
    return float(v.item()) if isinstance(v, Tensor) else float(v)


class LBFGS(Optimizer):
    r"""L-BFGS, as ``torch.optim.LBFGS``; ``step(closure)`` runs up to ``max_iter`` iterations.

    ``closure()`` must zero the gradients, compute the loss, call ``backward()`` and return the
    loss (a 0-d Tensor or a number); it runs with gradients enabled and is called several times
    per step. All parameters form one flat vector: one parameter group only.

    Args:
        params: iterable of Tensors (one group).
        lr (float): scale of the step (default 1).
        max_iter (int): iterations per ``step`` (default 20).
        max_eval (int): closure evaluations per ``step`` (default ``max_iter * 5 // 4``).
        tolerance_grad (float): stop when ``max |grad| <= tolerance_grad`` (default 1e-7).
        tolerance_change (float): stop when the change of loss or of the parameters falls
            below this (default 1e-9).
        history_size (int): number of curvature pairs kept (default 100).
        line_search_fn (None or "strong_wolfe"): without a line search, each iteration steps
            by ``lr`` (the first by ``min(1, 1/|g|_1) * lr``).

    State (kept on the first parameter, as in PyTorch): ``func_evals``, ``n_iter`` (ints),
    ``d``, ``prev_flat_grad`` (flat Tensors), ``t``, ``H_diag``, ``prev_loss`` (floats),
    ``old_dirs``, ``old_stps`` (lists of flat Tensors), ``ro`` (list of floats). Needs
    ``(history_size * 2 + 2) * numel`` extra memory.
    """

    def __init__(self, params, lr=1.0, max_iter=20, max_eval=None, tolerance_grad=1e-7,
                 tolerance_change=1e-9, history_size=100, line_search_fn=None):
        _check_number("LBFGS", "learning rate", lr)
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        if line_search_fn not in (None, "strong_wolfe"):
            raise ValueError(f"LBFGS: line_search_fn must be None or 'strong_wolfe', got {line_search_fn!r}")
        defaults = dict(lr=lr, max_iter=max_iter, max_eval=max_eval, tolerance_grad=tolerance_grad,
                        tolerance_change=tolerance_change, history_size=history_size,
                        line_search_fn=line_search_fn)
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        self._params = self.param_groups[0]["params"]

    def add_param_group(self, param_group):
        if getattr(self, "param_groups", None):
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        super().add_param_group(param_group)

    def _after_load(self):
        self._params = self.param_groups[0]["params"]

    # ---------------------------------------------------------------- flat-vector helpers
    def _gather_flat_grad(self):
        views = []
        for p in self._params:
            g = p.grad
            if g is None:
                views.append(get_xp(p._data).zeros(p._data.size, p._data.dtype))
            else:
                views.append(g._data.reshape(-1))
        return get_xp(views[0]).concatenate(views) if len(views) > 1 else views[0].copy()

    def _add_grad(self, step_size, update):
        offset = 0
        for p in self._params:
            d = p._data
            n = d.size
            d += (update[offset:offset + n] * step_size).reshape(d.shape)
            p._version[0] += 1
            offset += n

    def _clone_param(self):
        return [p._data.copy() for p in self._params]

    def _set_param(self, params_data):
        for p, x in zip(self._params, params_data):
            p._data[...] = x
            p._version[0] += 1

    def _directional_evaluate(self, closure, x, t, d):
        self._add_grad(t, d)
        loss = float(closure())
        flat_grad = self._gather_flat_grad()
        self._set_param(x)
        return loss, flat_grad

    def step(self, closure=None):
        """Run up to ``max_iter`` L-BFGS iterations; returns the loss of the first closure call
        (before the update), as PyTorch does."""
        if closure is None:
            raise RuntimeError("LBFGS.step: a closure is required (it re-evaluates the loss and its "
                               "gradient: zero_grad(), loss = f(), loss.backward(), return loss)")
        closure = enable_grad()(closure)
        group = self.param_groups[0]
        lr = _scalar(group["lr"])
        max_iter = group["max_iter"]
        max_eval = group["max_eval"]
        tolerance_grad = group["tolerance_grad"]
        tolerance_change = group["tolerance_change"]
        line_search_fn = group["line_search_fn"]
        history_size = group["history_size"]

        state = self.state[self._params[0]]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

        orig_loss = closure()
        loss = float(orig_loss)
        current_evals = 1
        state["func_evals"] += 1

        flat_grad = self._gather_flat_grad()
        xp = get_xp(flat_grad)
        grad_max = float(xp.abs(flat_grad).max())
        if not (math.isfinite(loss) and math.isfinite(grad_max)):
            raise RuntimeError(
                f"LBFGS.step: the closure returned a non-finite loss ({loss}) or gradient (max |grad| "
                f"{grad_max}) at the current parameters; L-BFGS can't step from there (check the model "
                "at these parameters, or use a line search: line_search_fn='strong_wolfe' never "
                "accepts a non-finite trial point)")
        if grad_max <= tolerance_grad:
            return orig_loss

        d = _arr(state.get("d"))
        t = _num(state.get("t"))
        old_dirs = [_arr(v) for v in state.get("old_dirs", [])]
        old_stps = [_arr(v) for v in state.get("old_stps", [])]
        ro = [_num(v) for v in state.get("ro", [])]
        H_diag = _num(state.get("H_diag"))
        prev_flat_grad = _arr(state.get("prev_flat_grad"))
        prev_loss = _num(state.get("prev_loss"))

        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1

            # compute the direction: steepest descent first, and after a failed line search
            # (which dropped the memory: d and prev_flat_grad are None then)
            restart = state["n_iter"] == 1 or d is None or prev_flat_grad is None
            if restart:
                d = -flat_grad
                old_dirs, old_stps, ro = [], [], []
                H_diag = 1.0
            else:
                y = flat_grad - prev_flat_grad
                s = d * t
                ys = _dot(y, s)
                if ys > 1e-10:
                    if len(old_dirs) == history_size:      # shift the history
                        old_dirs.pop(0)
                        old_stps.pop(0)
                        ro.pop(0)
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    H_diag = ys / _dot(y, y)
                num_old = len(old_dirs)
                al = [0.0] * num_old
                # two-loop recursion: q = -H g
                q = -flat_grad
                for i in range(num_old - 1, -1, -1):
                    al[i] = _dot(old_stps[i], q) * ro[i]
                    q -= old_dirs[i] * al[i]
                d = r = q * H_diag
                for i in range(num_old):
                    be_i = _dot(old_dirs[i], r) * ro[i]
                    r += old_stps[i] * (al[i] - be_i)

            if prev_flat_grad is None:
                prev_flat_grad = flat_grad.copy()
            else:
                prev_flat_grad[...] = flat_grad
            prev_loss = loss

            # the step length
            if restart:
                t = min(1.0, 1.0 / float(xp.abs(flat_grad).sum())) * lr
            else:
                t = lr

            gtd = _dot(flat_grad, d)           # directional derivative
            if gtd > -tolerance_change:
                break

            ls_func_evals = 0
            if line_search_fn is not None:
                x_init = self._clone_param()

                def obj_func(x, t, d):
                    return self._directional_evaluate(closure, x, t, d)

                loss, flat_grad, t, ls_func_evals = _strong_wolfe(
                    obj_func, x_init, t, d, loss, flat_grad, gtd, max_ls=max_eval - current_evals)
                current_evals += ls_func_evals
                state["func_evals"] += ls_func_evals
                if t == 0:
                    # no lower point along d: stay, and forget the curvature pairs, so that the
                    # next iteration (or the next call to step) restarts from steepest descent
                    # instead of repeating the same rejected trial step (PyTorch's stalls there)
                    d = prev_flat_grad = None
                    old_dirs, old_stps, ro = [], [], []
                    break
                self._add_grad(t, d)
                opt_cond = float(xp.abs(flat_grad).max()) <= tolerance_grad
                ls_func_evals = 0
            else:
                self._add_grad(t, d)
                opt_cond = False
                if n_iter != max_iter:
                    # re-evaluate unless this is the last iteration (no use then)
                    loss = float(closure())
                    flat_grad = self._gather_flat_grad()
                    opt_cond = float(xp.abs(flat_grad).max()) <= tolerance_grad
                    ls_func_evals = 1
                    if not math.isfinite(loss):
                        # the fixed step went where the loss is inf/NaN: iterating on would only
                        # spread NaN; the next call to step reports it
                        current_evals += 1
                        state["func_evals"] += 1
                        break

            current_evals += ls_func_evals
            state["func_evals"] += ls_func_evals

            # stopping conditions
            if n_iter == max_iter:
                break
            if current_evals >= max_eval:
                break
            if opt_cond:
                break
            if float(xp.abs(d * t).max()) <= tolerance_change:
                break
            if abs(loss - prev_loss) < tolerance_change:
                break

        state["d"] = None if d is None else _buffer(d)
        state["t"] = t
        state["old_dirs"] = [_buffer(v) for v in old_dirs]
        state["old_stps"] = [_buffer(v) for v in old_stps]
        state["ro"] = ro
        state["H_diag"] = H_diag
        state["prev_flat_grad"] = None if prev_flat_grad is None else _buffer(prev_flat_grad)
        state["prev_loss"] = prev_loss
        return orig_loss
