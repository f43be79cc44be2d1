"""Engine semantics: accumulation, retain/create graph, hooks, grad modes, custom Functions,
in-place safety, anomaly detection, deep graphs."""
import numpy as np
import pytest

import diffsim as ds
from diffsim.testing import gradcheck, gradgradcheck


def leaf(values, **kw):
    return ds.tensor(values, dtype=ds.float64, requires_grad=True, **kw)


def test_grad_accumulates_into_leaves():
    x = leaf([1.0, 2.0])
    (x * x).sum().backward()
    (3 * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2 + 3, 4 + 3])


def test_leaf_grad_is_not_aliased_between_leaves():
    a, b = leaf([1.0]), leaf([2.0])
    (a + b).sum().backward()
    a.grad.zero_()
    assert b.grad.item() == 1.0


def test_shared_subexpression_and_diamond():
    x = leaf([0.5, -1.0, 2.0])
    y = x.exp()
    z = (y * y + y.sin()).sum()
    z.backward()
    e = np.exp([0.5, -1.0, 2.0])
    np.testing.assert_allclose(x.grad.numpy(), (2 * e + np.cos(e)) * e)


def test_backward_nonscalar_needs_gradient():
    x = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match=r"implicitly created only for scalar outputs.*\[2\]"):
        (x * 2).backward()
    (x * 2).backward(ds.tensor([1.0, 0.5], dtype=ds.float64))
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 1.0])


def test_backward_gradient_shape_mismatch():
    x = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match=r"shape \[3\].*\[2\]"):
        (x * 2).backward(ds.ones(3, dtype=ds.float64))


def test_second_backward_through_freed_graph_raises():
    x = leaf([1.0, 2.0])
    y = (x.sin() * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_retain_graph_allows_second_backward():
    x = leaf([1.0, 2.0])
    y = (x.sin() * x).sum()
    y.backward(retain_graph=True)
    g1 = x.grad.numpy().copy()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * g1)


def test_create_graph_third_order():
    x = leaf([0.3, -0.7])
    y = (x ** 4).sum()
    (g,) = ds.autograd.grad(y, x, create_graph=True)
    (h,) = ds.autograd.grad(g.sum(), x, create_graph=True)
    (t,) = ds.autograd.grad(h.sum(), x)
    np.testing.assert_allclose(g.detach().numpy(), 4 * np.array([0.3, -0.7]) ** 3)
    np.testing.assert_allclose(h.detach().numpy(), 12 * np.array([0.3, -0.7]) ** 2)
    np.testing.assert_allclose(t.numpy(), 24 * np.array([0.3, -0.7]))


def test_autograd_grad_does_not_touch_leaf_grad_and_allow_unused():
    x, z = leaf([1.0]), leaf([2.0])
    (g,) = ds.autograd.grad((x * 3).sum(), x)
    assert g.item() == 3.0 and x.grad is None
    with pytest.raises(RuntimeError, match="not used"):
        ds.autograd.grad((x * 3).sum(), [x, z])
    gx, gz = ds.autograd.grad((x * 3).sum(), [x, z], allow_unused=True)
    assert gz is None and gx.item() == 3.0


def test_grad_wrt_intermediate():
    x = leaf([1.0, 2.0])
    y = x * 2
    z = (y * y).sum()
    (gy,) = ds.autograd.grad(z, y)
    np.testing.assert_allclose(gy.numpy(), [4.0, 8.0])


def test_deep_chain_is_iterative():
    x = leaf([0.1])
    y = x
    for _ in range(100_000):
        y = y + 0.0
    y.sum().backward()
    assert x.grad.item() == 1.0


def test_hooks_and_retain_grad():
    x = leaf([1.0, 2.0])
    y = x * 3
    y.retain_grad()
    seen = []
    h = y.register_hook(lambda g: seen.append(g.numpy().copy()))
    x.register_hook(lambda g: g * 10)
    (y * y).sum().backward()
    np.testing.assert_allclose(seen[0], [6.0, 12.0])
    np.testing.assert_allclose(y.grad.numpy(), [6.0, 12.0])
    np.testing.assert_allclose(x.grad.numpy(), [180.0, 360.0])
    h.remove()


def test_hook_on_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="doesn't require grad"):
        ds.ones(2).register_hook(lambda g: g)


def test_no_grad_enable_grad_set_grad_enabled_inference_mode():
    x = leaf([1.0])
    with ds.no_grad():
        assert not (x * 2).requires_grad
        with ds.enable_grad():
            assert (x * 2).requires_grad
    with ds.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert ds.is_grad_enabled()
    with ds.inference_mode():
        assert not (x * 2).requires_grad

    @ds.no_grad()
    def f(t):
        return t * 2
    assert not f(x).requires_grad
    assert (x * 2).requires_grad


def test_requires_grad_on_integer_tensor_raises():
    with pytest.raises(RuntimeError, match="floating.*int64"):
        ds.tensor([1, 2], requires_grad=True)
    with pytest.raises(RuntimeError, match="int32"):
        ds.zeros(2, dtype=ds.int32).requires_grad_()


def test_integer_and_comparison_results_do_not_require_grad():
    x = leaf([1.0, 2.0])
    assert not (x > 1).requires_grad
    assert not x.argmax().requires_grad
    assert (x > 1).dtype == ds.bool


def test_inplace_on_leaf_requiring_grad_raises():
    x = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad.*in-place"):
        x += 1
    with pytest.raises(RuntimeError, match="leaf"):
        x.mul_(2)
    with ds.no_grad():
        x.mul_(2)
    np.testing.assert_allclose(x.detach().numpy(), [2.0, 4.0])


def test_inplace_change_of_saved_tensor_raises_at_backward():
    x = leaf([1.0, 2.0])
    y = x * 1
    z = y.sin()           # saves y
    y.add_(1)
    with pytest.raises(RuntimeError, match=r"sin backward.*modified by an in-place operation.*version"):
        z.sum().backward()


def test_inplace_change_of_saved_output_raises():
    x = leaf([1.0, 2.0])
    y = x.exp()           # saves its output
    z = y * 1
    y.mul_(2)
    with pytest.raises(RuntimeError, match="exp backward"):
        (z + y).sum().backward()


def test_inplace_ops_are_differentiable():
    x = leaf([1.0, 2.0, 3.0])
    y = x * 2
    y += x          # y = 3x
    y.mul_(3)       # y = 9x
    y.sub_(x * x)   # y = 9x - x^2
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 9 - 2 * np.array([1.0, 2.0, 3.0]))


def test_inplace_mul_by_itself_needs_the_old_value_and_raises():
    x = leaf([1.0, 2.0])
    y = x * 1
    y.mul_(y)
    with pytest.raises(RuntimeError, match="modified by an in-place"):
        y.sum().backward()


def test_inplace_not_needing_saved_value_is_fine():
    x = leaf([1.0, 2.0])
    y = x * 2        # mul by scalar saves nothing of x
    z = y + 1
    z.mul_(3)
    z.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [6.0, 6.0])


def test_inplace_on_view_of_tensor_requiring_grad_raises():
    x = leaf([1.0, 2.0, 3.0])
    y = x * 1
    v = y[1:]
    with pytest.raises(RuntimeError, match="view"):
        v.mul_(2)


def test_setitem_is_differentiable_wrt_both():
    x = leaf([1.0, 2.0, 3.0, 4.0])
    v = leaf([10.0, 20.0])
    y = x * 1
    y[1:3] = v * 2
    (y * ds.tensor([1.0, 2.0, 3.0, 4.0], dtype=ds.float64)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0, 0.0, 0.0, 4.0])
    np.testing.assert_allclose(v.grad.numpy(), [4.0, 6.0])


def test_views_share_version_counter():
    x = ds.zeros(4, dtype=ds.float64)
    v = x[1:3]
    before = x._version_count
    v.add_(1.0)
    assert x._version_count == before + 1
    np.testing.assert_allclose(x.numpy(), [0, 1, 1, 0])


class Cube(ds.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * x ** 2 * g


class SplitSum(ds.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, scale):
        ctx.scale = scale
        idx = (a > 0).long()
        ctx.mark_non_differentiable(idx)
        return a + b * scale, idx

    @staticmethod
    def backward(ctx, g, _gidx):
        assert ctx.needs_input_grad == (True, True, False)
        return g, g * ctx.scale, None


def test_custom_function_first_and_second_order():
    x = leaf([0.5, -1.5])
    assert gradcheck(Cube.apply, (x,))
    assert gradgradcheck(Cube.apply, (x,))
    y = Cube.apply(x)
    assert "CubeBackward" in repr(y)


def test_custom_function_multiple_outputs_and_non_differentiable():
    a, b = leaf([1.0, -2.0]), leaf([3.0, 4.0])
    out, idx = SplitSum.apply(a, b, 2.0)
    assert not idx.requires_grad and idx.dtype == ds.int64
    out.sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), [1.0, 1.0])
    np.testing.assert_allclose(b.grad.numpy(), [2.0, 2.0])


def test_once_differentiable_runs_without_graph():
    class Sq(ds.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        @ds.autograd.once_differentiable
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 2 * x * g
    x = leaf([3.0])
    (g,) = ds.autograd.grad(Sq.apply(x).sum(), x, create_graph=True)
    assert g.item() == 6.0 and not g.requires_grad


def test_custom_function_saved_tensor_modified_raises():
    x = leaf([1.0])
    y = x * 1
    z = Cube.apply(y)
    with ds.no_grad():
        y.add_(1)
    with pytest.raises(RuntimeError, match="modified by an in-place"):
        z.sum().backward()


def test_detect_anomaly_names_op_and_forward_location():
    x = leaf([0.0, 1.0])
    with ds.autograd.detect_anomaly():
        y = x.sqrt()          # d sqrt / dx at 0 is inf
        with pytest.raises(RuntimeError, match=r"(?s)'sqrt' returned NaN or Inf.*test_autograd.py"):
            y.sum().backward()


def test_broadcast_gradients_reduce_to_input_shapes():
    a = leaf(np.ones((3, 1)))
    b = leaf(np.ones(4))
    c = leaf(2.0)
    (a * b * c).sum().backward()
    assert a.grad.shape == (3, 1) and b.grad.shape == (4,) and c.grad.shape == ()
    np.testing.assert_allclose(a.grad.numpy(), 8.0)
    np.testing.assert_allclose(b.grad.numpy(), 6.0)
    np.testing.assert_allclose(c.grad.numpy(), 12.0)


def test_float32_grads_stay_float32():
    x = ds.randn(3, requires_grad=True)
    (x * 2.0 + x.sin()).sum().backward()
    assert x.grad.dtype == ds.float32


def test_backward_inputs_argument():
    x, y = leaf([1.0]), leaf([2.0])
    (x * y).sum().backward(inputs=[x])
    assert x.grad.item() == 2.0 and y.grad is None


def test_next_functions_and_grad_fn_names():
    x = leaf([1.0])
    y = (x * 2).sin()
    assert type(y.grad_fn).__name__ == "Node"
    assert "SinBackward" in repr(y.grad_fn)
    (prev, nr), = y.grad_fn.next_functions
    assert "MulBackward" in repr(prev) and nr == 0


def test_inplace_on_view_with_grad_requiring_value_raises():
    buf = ds.zeros(4, dtype=ds.float64)
    y = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match="view"):
        buf[1:3].add_(y)
    buf[1:3] = y          # through the base: supported and differentiable
    buf.sum().backward()
    np.testing.assert_allclose(y.grad.numpy(), [1.0, 1.0])


def test_no_grad_as_bare_decorator():
    @ds.no_grad
    def f(t):
        return t * 2
    assert not f(leaf([1.0])).requires_grad


# ------------------------------------------------------------------ regressions (review)

def test_set_grad_enabled_as_decorator_only_acts_while_the_function_runs():
    @ds.set_grad_enabled(False)
    def f():
        return ds.is_grad_enabled()
    assert ds.is_grad_enabled()                # decorating must not switch grad mode off
    assert f() is False and ds.is_grad_enabled()
    with ds.no_grad():                          # each call restores the mode it was called in
        f()
        assert not ds.is_grad_enabled()
    assert ds.is_grad_enabled()


def test_inference_mode_as_bare_decorator():
    @ds.inference_mode
    def f(t):
        return t * 2
    y = f(leaf([1.0]))
    assert not y.requires_grad and ds.is_grad_enabled()


def test_custom_function_output_shares_version_with_saved_tensor():
    class Exp(ds.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            y = x.exp()
            ctx.save_for_backward(y)
            return y

        @staticmethod
        def backward(ctx, g):
            (y,) = ctx.saved_tensors
            return g * y
    x = leaf([0.0, 1.0])
    y = Exp.apply(x)
    with ds.no_grad():
        y.add_(100.0)                          # the saved output is this very memory
    with pytest.raises(RuntimeError, match="modified by an in-place"):
        y.sum().backward()


def test_custom_function_returning_its_input_is_a_view_of_it():
    class Ident(ds.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x

        @staticmethod
        def backward(ctx, g):
            return g
    x = leaf([1.0, 2.0])
    y = Ident.apply(x)
    with pytest.raises(RuntimeError, match="in-place"):
        y.add_(1.0)                            # would silently modify the leaf x
    np.testing.assert_allclose(x.detach().numpy(), [1.0, 2.0])


def test_custom_function_node_is_freed_without_the_cycle_collector():
    import gc
    import weakref
    gc.disable()
    try:
        x = leaf(np.ones(10))
        y = Cube.apply(x)
        node = weakref.ref(y.grad_fn)
        c = ds.checkpoint(lambda t: (t * 2).sin(), x)
        cnode = weakref.ref(c.grad_fn.next_functions[0][0])
        del y, c
        assert node() is None and cnode() is None
    finally:
        gc.enable()


def test_custom_function_saved_tensors_freed_after_backward():
    import gc
    import weakref
    refs = []

    class F(ds.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            t = x * 2
            ctx.save_for_backward(t)
            refs.append(weakref.ref(t))
            return t * 3

        @staticmethod
        def backward(ctx, g):
            (t,) = ctx.saved_tensors
            return g * 6
    x = leaf(np.ones(5))
    y = F.apply(x)
    y.sum().backward()
    gc.collect()
    assert refs[0]() is None                   # y (and its node) are alive, the saved t is not
    np.testing.assert_allclose(x.grad.numpy(), 6.0)


def _custom(bwd):
    class F(ds.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        backward = staticmethod(bwd)
    return F


@pytest.mark.parametrize("bad", [lambda g: ds.tensor(1.0, dtype=ds.float64),
                                 lambda g: g.reshape(-1), lambda g: g.reshape(3, 2)])
def test_custom_backward_gradient_of_wrong_shape_raises(bad):
    x = leaf(np.ones((2, 3)))
    y = _custom(lambda ctx, g: bad(g)).apply(x)
    with pytest.raises(RuntimeError, match=r"F.backward returned an invalid gradient for input 0"):
        y.sum().backward()


def test_custom_backward_broadcast_gradient_is_summed_and_extra_grads_raise():
    x = leaf(np.ones((2, 3)))
    _custom(lambda ctx, g: g.expand(4, 2, 3)).apply(x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 4.0)
    y = _custom(lambda ctx, g: (g, g)).apply(leaf([1.0]))
    with pytest.raises(RuntimeError, match="returned 2 gradients, but forward got 1 inputs"):
        y.sum().backward()


def test_backward_inputs_does_not_alias_gradients():
    x, w = leaf([1.0, 1.0]), leaf([1.0, 1.0])
    G = ds.tensor([1.0, 2.0], dtype=ds.float64)
    (x + w).backward(G, inputs=[x, w])
    x.grad.zero_()
    np.testing.assert_allclose(w.grad.numpy(), [1.0, 2.0])
    np.testing.assert_allclose(G.numpy(), [1.0, 2.0])


def test_retain_grad_sees_the_gradient_after_hooks():
    x = leaf([1.0, 1.0])
    y = x * 1
    y.retain_grad()
    y.register_hook(lambda g: g * 2)           # registered later, still runs before retain_grad
    (y * 3).sum().backward()
    np.testing.assert_allclose(y.grad.numpy(), [6.0, 6.0])
    np.testing.assert_allclose(x.grad.numpy(), [6.0, 6.0])


def test_inplace_through_data_is_not_tracked():
    x = leaf([1.0, 1.0])
    y = x * x
    x.data.add_(1.0)                           # PyTorch: .data changes are invisible to autograd
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [4.0, 4.0])
    d = x.detach()                             # detach() shares the version counter
    z = x * x
    d.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an in-place"):
        z.sum().backward()


def test_gradcheck_perturbs_non_contiguous_inputs():
    a = np.random.default_rng(0).standard_normal((3, 4)).T      # a non-contiguous view
    x = ds.as_tensor(a).requires_grad_()
    assert not x._data.flags.c_contiguous
    assert gradcheck(lambda t: (t * t * t).sum(), (x,))
