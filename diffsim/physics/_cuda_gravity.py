"""Hand-written CUDA kernels for the softened-gravity op (``particles.gravity_acceleration``).

The numpy/cupy path in ``particles.py`` evaluates the all-pairs sums in row blocks with
[chunk, N] temporaries and Python loops; on a GPU that is no faster than the CPU at a few
thousand particles. These kernels do the same sums in one launch each:

* ``gravity_fwd<T, D>``: one thread per target particle ``i``; the block walks over the
  sources in tiles of ``blockDim.x`` particles staged in shared memory (the classic tiled
  N-body of GPU Gems 3, ch. 31) and accumulates
  ``a_i = G sum_{j != i} m_j d_ij / r_e^3``, ``d_ij = x_j - x_i``, ``r_e^2 = |d_ij|^2 + eps^2``.
* ``gravity_vjp<T, D>``: the backward, also one thread per particle ``p``. For a pair with
  ``d = x_j - x_i``, ``k = r_e^-3``, ``q = r_e^-5``, ``s = g_i . d`` the numpy backward adds
  ``v = G m_j (k g_i - 3 q s d)`` to ``x_j`` and ``-v`` to ``x_i``. Collecting, for one
  particle ``p``, the pairs where it is the target (``i = p``) and where it is the source
  (``j = p``), with the loop variable ``j`` and ``d = x_j - x_p``:

      gx_p  = G sum_j [ k (m_p g_j - m_j g_p) + 3 q (m_j (g_p . d) - m_p (g_j . d)) d ]
      gm_p  = -G sum_j k (g_j . d)
      sG_p  = sum_j m_j k (g_p . d)         (dL/dG = sum_p sG_p)
      se_p  = sum_j m_j q (g_p . d)         (dL/deps = -3 eps G sum_p se_p)

  so every particle's gradient is one pass over all others, with no atomics. The two
  scalar gradients are reduced afterwards from per-particle partials.

Self pairs (``j == i``) are skipped by index, exactly like the numpy path (which zeroes the
diagonal of ``r_e^-3``), so ``eps = 0`` is fine for distinct positions; two distinct particles
at the same position with ``eps = 0`` give inf/NaN on both paths.

Templated over ``T`` (float, double) and ``D`` (2, 3); other dtypes or dimensions fall back
to the cupy path. Nothing is compiled and cupy is not imported until the first call on a
GPU array (``backend.cupy_or_raise``); the compiled module is cached per device.
``reference_vjp`` is a dense numpy transcription of the per-particle formulas above, for
tests on machines without a GPU.
"""
from __future__ import annotations

import numpy as np

from ..autodiff.backend import cupy_or_raise

__all__ = ["supports", "gravity_forward", "gravity_vjp", "reference_vjp", "cuda_sources",
           "KERNEL_SOURCE", "NAME_EXPRESSIONS"]

KERNEL_SOURCE = r"""
template <typename T> __device__ __forceinline__ T grav_sqrt(T v);
template <> __device__ __forceinline__ double grav_sqrt<double>(double v) { return sqrt(v); }
template <> __device__ __forceinline__ float grav_sqrt<float>(float v) { return sqrtf(v); }

// x: positions [n, D] (row-major, contiguous); m: masses, particle j has m[j * ms]
// (ms = 0: one mass shared by all); Gp, e2p: 1-element device arrays holding G and eps^2;
// out: accelerations [n, D]. Dynamic shared memory: (D + 1) * blockDim.x elements of T.
template <typename T, int D>
__global__ void gravity_fwd(const T* __restrict__ x, const T* __restrict__ m, const int ms,
                            const T* __restrict__ Gp, const T* __restrict__ e2p,
                            T* __restrict__ out, const int n)
{
    extern __shared__ unsigned char grav_smem[];
    T* sx = reinterpret_cast<T*>(grav_smem);      // [D][B] positions, then [B] masses
    const int B = blockDim.x;
    const int tid = threadIdx.x;
    const int i = blockIdx.x * B + tid;
    const bool active = i < n;
    const T e2 = e2p[0];
    T xi[D];
    T acc[D];
#pragma unroll
    for (int k = 0; k < D; ++k) {
        xi[k] = active ? x[(long long)i * D + k] : T(0);
        acc[k] = T(0);
    }
    for (int t0 = 0; t0 < n; t0 += B) {
        const int jl = t0 + tid;
        if (jl < n) {
#pragma unroll
            for (int k = 0; k < D; ++k) sx[k * B + tid] = x[(long long)jl * D + k];
            sx[D * B + tid] = m[(long long)jl * ms];
        }
        __syncthreads();
        const int cnt = min(B, n - t0);
        if (active) {
            for (int jj = 0; jj < cnt; ++jj) {
                if (t0 + jj == i) continue;              // self pair: no force
                T d[D];
#pragma unroll
                for (int k = 0; k < D; ++k) d[k] = sx[k * B + jj] - xi[k];
                T r2 = d[0] * d[0];
#pragma unroll
                for (int k = 1; k < D; ++k) r2 += d[k] * d[k];
                r2 += e2;
                const T inv2 = T(1) / r2;
                const T inv3 = inv2 * grav_sqrt<T>(inv2);
                const T w = inv3 * sx[D * B + jj];
#pragma unroll
                for (int k = 0; k < D; ++k) acc[k] += w * d[k];
            }
        }
        __syncthreads();
    }
    if (active) {
        const T G = Gp[0];
#pragma unroll
        for (int k = 0; k < D; ++k) out[(long long)i * D + k] = acc[k] * G;
    }
}

// The backward of gravity_fwd for an output gradient g [n, D]: gx [n, D], gm [n] (per
// particle, even for a shared mass), part [2, n]: per-particle partial sums of the G and eps
// gradients (see the Python module's docstring). Dynamic shared memory:
// (2 D + 1) * blockDim.x elements of T.
template <typename T, int D>
__global__ void gravity_vjp(const T* __restrict__ x, const T* __restrict__ m, const int ms,
                            const T* __restrict__ g, const T* __restrict__ Gp,
                            const T* __restrict__ e2p, T* __restrict__ gx, T* __restrict__ gm,
                            T* __restrict__ part, const int n)
{
    extern __shared__ unsigned char grav_smem[];
    T* sx = reinterpret_cast<T*>(grav_smem);      // [D][B] positions, [D][B] g, [B] masses
    T* sg = sx + D * blockDim.x;
    T* sm = sg + D * blockDim.x;
    const int B = blockDim.x;
    const int tid = threadIdx.x;
    const int p = blockIdx.x * B + tid;
    const bool active = p < n;
    const T e2 = e2p[0];
    const T mp = active ? m[(long long)p * ms] : T(0);
    T xp[D], gp[D], acc[D];
#pragma unroll
    for (int k = 0; k < D; ++k) {
        xp[k] = active ? x[(long long)p * D + k] : T(0);
        gp[k] = active ? g[(long long)p * D + k] : T(0);
        acc[k] = T(0);
    }
    T acc_m = T(0), acc_G = T(0), acc_e = T(0);
    for (int t0 = 0; t0 < n; t0 += B) {
        const int jl = t0 + tid;
        if (jl < n) {
#pragma unroll
            for (int k = 0; k < D; ++k) {
                sx[k * B + tid] = x[(long long)jl * D + k];
                sg[k * B + tid] = g[(long long)jl * D + k];
            }
            sm[tid] = m[(long long)jl * ms];
        }
        __syncthreads();
        const int cnt = min(B, n - t0);
        if (active) {
            for (int jj = 0; jj < cnt; ++jj) {
                if (t0 + jj == p) continue;              // self pair: contributes nothing
                T d[D];
#pragma unroll
                for (int k = 0; k < D; ++k) d[k] = sx[k * B + jj] - xp[k];
                T r2 = d[0] * d[0];
#pragma unroll
                for (int k = 1; k < D; ++k) r2 += d[k] * d[k];
                r2 += e2;
                const T inv2 = T(1) / r2;
                const T kk = inv2 * grav_sqrt<T>(inv2);  // r_e^-3
                const T q = kk * inv2;                   // r_e^-5
                const T mj = sm[jj];
                T sp = gp[0] * d[0];                     // g_p . d
                T sj = sg[jj] * d[0];                    // g_j . d
#pragma unroll
                for (int k = 1; k < D; ++k) {
                    sp += gp[k] * d[k];
                    sj += sg[k * B + jj] * d[k];
                }
                const T c = T(3) * q * (mj * sp - mp * sj);
#pragma unroll
                for (int k = 0; k < D; ++k)
                    acc[k] += kk * (mp * sg[k * B + jj] - mj * gp[k]) + c * d[k];
                acc_m += kk * sj;
                const T mjsp = mj * sp;
                acc_G += kk * mjsp;
                acc_e += q * mjsp;
            }
        }
        __syncthreads();
    }
    if (active) {
        const T G = Gp[0];
#pragma unroll
        for (int k = 0; k < D; ++k) gx[(long long)p * D + k] = acc[k] * G;
        gm[p] = -acc_m * G;
        part[p] = acc_G;
        part[n + p] = acc_e;
    }
}
"""

_TYPES = {np.dtype(np.float64): "double", np.dtype(np.float32): "float"}
NAME_EXPRESSIONS = tuple(f"{kern}<{t},{d}>" for kern in ("gravity_fwd", "gravity_vjp")
                         for t in ("double", "float") for d in (2, 3))
_MAX_BLOCK = 256
_modules = {}           # device id -> cupy.RawModule (compiled lazily, on first use)
_sm_counts = {}


def cuda_sources():
    """``{file name: CUDA source}`` as NVRTC sees it plus explicit instantiations of every
    kernel cupy asks for, so that ``nvcc -c`` compiles exactly what runs (for tests)."""
    inst = []
    for expr in NAME_EXPRESSIONS:
        kern, args = expr.split("<", 1)
        t = args.split(",", 1)[0]
        params = {
            "gravity_fwd": f"const {t}*, const {t}*, const int, const {t}*, const {t}*, {t}*, const int",
            "gravity_vjp": (f"const {t}*, const {t}*, const int, const {t}*, const {t}*, const {t}*, "
                            f"{t}*, {t}*, {t}*, const int"),
        }[kern]
        inst.append(f"template __global__ void {expr}({params});")
    return {"gravity.cu": KERNEL_SOURCE + "\n" + "\n".join(inst) + "\n"}


def supports(x) -> bool:
    """Whether the kernels handle positions ``x`` (float32/float64, [N, 2] or [N, 3])."""
    return x.ndim == 2 and x.shape[1] in (2, 3) and x.dtype in _TYPES


def _module(cp, dev_id):
    mod = _modules.get(dev_id)
    if mod is None:
        mod = cp.RawModule(code=KERNEL_SOURCE, options=("--std=c++14",),
                           name_expressions=list(NAME_EXPRESSIONS))
        _modules[dev_id] = mod
    return mod


def _launch_shape(cp, dev_id, n):
    """Block size: tiles of 32..256 sources, small enough that there are about two blocks per
    SM for small N (N = 2 000 on an H100 would otherwise fill a sixth of the SMs)."""
    sms = _sm_counts.get(dev_id)
    if sms is None:
        sms = _sm_counts[dev_id] = int(cp.cuda.Device(dev_id).attributes["MultiProcessorCount"])
    b = 32
    while b < _MAX_BLOCK and n >= 2 * b * 2 * sms:
        b *= 2
    return (n + b - 1) // b, b


def _dev_scalar(cp, v, dtype):
    """A 1-element device array holding ``v`` (a Python number or a 0-d cupy array)."""
    if isinstance(v, cp.ndarray):
        return cp.ascontiguousarray(v.astype(dtype, copy=False).reshape(1))
    return cp.full((1,), v, dtype=dtype)


def _prepare(cp, x, m, G, eps):
    dtype = x.dtype
    x = cp.ascontiguousarray(x)
    m = cp.asarray(m).astype(dtype, copy=False)
    ms = 0 if m.ndim == 0 else 1          # before ascontiguousarray, which makes 0-d arrays 1-d
    m = cp.ascontiguousarray(m.reshape(-1))
    e2 = _dev_scalar(cp, eps * eps, dtype)
    Gd = _dev_scalar(cp, G, dtype)
    return x, m, ms, Gd, e2


def gravity_forward(x, m, G, eps):
    """Accelerations [N, D] of the gravity op on cupy arrays (see ``gravity_fwd``)."""
    cp = cupy_or_raise()
    n, dim = x.shape
    dtype = x.dtype
    dev_id = x.device.id
    with cp.cuda.Device(dev_id):
        out = cp.empty((n, dim), dtype=dtype)
        if n == 0:
            return out
        x, m, ms, Gd, e2 = _prepare(cp, x, m, G, eps)
        kern = _module(cp, dev_id).get_function(f"gravity_fwd<{_TYPES[dtype]},{dim}>")
        grid, block = _launch_shape(cp, dev_id, n)
        kern((grid,), (block,), (x, m, np.int32(ms), Gd, e2, out, np.int32(n)),
             shared_mem=(dim + 1) * block * dtype.itemsize)
    return out


def gravity_vjp(g, x, m, G, eps):
    """``(gx, gm, gG, geps)`` of the gravity op on cupy arrays, as ``_gravity_vjp_fwd``."""
    cp = cupy_or_raise()
    n, dim = x.shape
    dtype = x.dtype
    dev_id = x.device.id
    with cp.cuda.Device(dev_id):
        gx = cp.empty((n, dim), dtype=dtype)
        gm = cp.empty(n, dtype=dtype)
        part = cp.zeros((2, n), dtype=dtype)
        if n:
            g = cp.ascontiguousarray(cp.asarray(g).astype(dtype, copy=False))
            xc, mc, ms, Gd, e2 = _prepare(cp, x, m, G, eps)
            kern = _module(cp, dev_id).get_function(f"gravity_vjp<{_TYPES[dtype]},{dim}>")
            grid, block = _launch_shape(cp, dev_id, n)
            kern((grid,), (block,), (xc, mc, np.int32(ms), g, Gd, e2, gx, gm, part, np.int32(n)),
                 shared_mem=(2 * dim + 1) * block * dtype.itemsize)
        sums = part.sum(axis=1)
        if getattr(m, "ndim", 0) == 0:                   # one mass shared by all particles
            gm = gm.sum()
        gG = sums[0].astype(dtype)
        geps = (-3.0 * eps * G * sums[1]).astype(dtype)
    return gx, gm, gG, geps


def reference_vjp(g, x, m, G, eps):
    """Dense numpy transcription of the per-particle formulas of ``gravity_vjp`` (small N;
    for checking the kernels' algebra against the op's backward without a GPU)."""
    x, g = np.asarray(x), np.asarray(g)
    n = x.shape[0]
    mv = np.broadcast_to(np.asarray(m, dtype=x.dtype), (n,))
    d = x[None, :, :] - x[:, None, :]                    # d[p, j] = x_j - x_p
    r2 = (d * d).sum(-1) + eps * eps
    np.fill_diagonal(r2, 1.0)
    inv2 = 1.0 / r2
    k = inv2 * np.sqrt(inv2)
    np.fill_diagonal(k, 0.0)
    q = k * inv2
    sp = np.einsum("pk,pjk->pj", g, d)                   # g_p . d
    sj = np.einsum("jk,pjk->pj", g, d)                   # g_j . d
    c = 3.0 * q * (mv[None, :] * sp - mv[:, None] * sj)
    gx = G * (np.einsum("pj,jk->pk", k * mv[:, None], g) - (k * mv[None, :]).sum(1)[:, None] * g
              + np.einsum("pj,pjk->pk", c, d))
    gm = -G * (k * sj).sum(1)
    if np.ndim(m) == 0:
        gm = gm.sum()
    gG = (mv[None, :] * k * sp).sum()
    geps = -3.0 * eps * G * (mv[None, :] * q * sp).sum()
    return gx, gm, np.asarray(gG, x.dtype), np.asarray(geps, x.dtype)
