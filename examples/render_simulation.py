"""Recover a cloth's stiffness and the wind from rendered images alone (simulator + renderer).

A square cloth (``physics.MassSpring.cloth``: structural + shear springs, pinned along one
edge) starts flat and horizontal and falls, swinging down under gravity while a wind blows
on it: the air moves at velocity ``w`` and pulls every particle with linear drag, ``dv/dt =
... - c (v - w)``. Its triangle mesh (``render.grid_faces``) is rendered as soft silhouettes
(``render.silhouette``, SoftRas) by ``--cameras`` cameras at ``--frames`` time steps of the
rollout. Those images of the true cloth (stiffness ``k = 40``, wind ``w = (1.5, 0, -1)`` m/s),
with ``--noise`` Gaussian pixel noise added, are the only data. From a wrong guess (``k = 10``,
no wind) L-BFGS (``diffsim.optim.LBFGS``) fits ``k`` and ``w`` (``--fit`` picks stiffness,
wind or both) by minimizing the squared difference between rendered and target images; the
gradient flows from the pixels back through the soft rasterizer, the camera projection and
every step of the simulation (checkpointed in segments of ``--checkpoint`` steps). The
stiffness is parametrized as ``k = k_max sigmoid(z)`` (about ``k_max e^z`` for small k), so
no trial step of the line search leaves the time step's stability limit.

SoftRas's ``sigma`` is one pixel squared by default: sharp enough for the silhouettes to
resolve the cloth's stretch, blurred enough for an edge to feel a neighbouring pixel's error.
(The faint lines inside the silhouettes are SoftRas's own: on an edge shared by two faces
each has ``D = 1/2``, so the silhouette there is 3/4.)

    python examples/render_simulation.py                       # 8x8 cloth, 4 cameras, 48x48
    python examples/render_simulation.py --n 5 --size 24 --steps 100 --iters 8 --plot none

The figure (examples/output/render_simulation.png: target / initial / fitted images, loss
per evaluation) needs matplotlib; without it the script says so and carries on.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

try:
    import diffsim as ds
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import diffsim as ds
from diffsim import physics, render

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PLOT = os.path.join(HERE, "output", "render_simulation.png")
DTYPE = ds.float64
K_TRUE, K_INIT = 40.0, 10.0
WIND_TRUE, WIND_INIT = (1.5, 0.0, -1.0), (0.0, 0.0, 0.0)
AIR_DRAG = 2.0                        # c in 1/s
MASS = 0.01                           # kg per particle
CLOTH_SIZE = 0.5                      # m
LOOK_AT = (0.25, -0.2, 0.2)           # roughly the middle of the swept volume
EYES = [(0.25, -0.15, 1.6), (1.6, 0.2, 0.8), (-0.8, 0.9, 1.1), (0.3, 1.5, -0.4)]


class Scene:
    """The cloth (its stiffness and wind set per rollout), its faces and the cameras."""

    def __init__(self, n, image_size, n_cameras, steps, dt, frames, sigma, checkpoint):
        self.cloth = physics.MassSpring.cloth(n, size=CLOTH_SIZE, pinned="top-row", stiffness=K_TRUE,
                                              damping=0.02, mass=MASS, drag=AIR_DRAG,
                                              force=self._wind_force, dtype=DTYPE)
        self.wind = ds.tensor(WIND_TRUE, dtype=DTYPE)
        self.faces = render.grid_faces(n, n)            # [2 (n-1)^2, 3]
        eye = ds.tensor(EYES[:n_cameras], dtype=DTYPE)
        R, T = render.look_at(eye, ds.tensor(LOOK_AT, dtype=DTYPE).expand(n_cameras, 3))
        self.camera = render.PerspectiveCamera(R, T, image_size=image_size, fov=40.0, dtype=DTYPE)
        self.steps, self.dt, self.sigma = steps, dt, sigma
        self.record = max(1, steps // frames)           # render every record-th step (not t = 0)
        self.checkpoint = checkpoint or None

    def _wind_force(self, x, v, t, control):
        # with the system's drag -c v this makes dv/dt = -c (v - w): air moving at w
        m = self.cloth.mass
        return (AIR_DRAG * (m[:, None] if m.ndim else m)) * self.wind     # [P, 3] or [3] (broadcast)

    def rollout(self, stiffness, wind):
        """Recorded cloth positions, a list of [P, 3] (t = record dt, 2 record dt, ...)."""
        self.cloth.stiffness, self.wind = stiffness, wind
        traj = physics.simulate(self.cloth, self.cloth.initial_state(), self.steps, self.dt,
                                record=self.record, checkpoint=self.checkpoint)
        return [s.x for s in traj.states[1:]]

    def render(self, stiffness, wind):
        """Soft silhouettes [frames, cameras, H, W] of the simulated cloth."""
        return ds.stack([render.silhouette(render.Mesh(x, self.faces), self.camera, sigma=self.sigma)
                         for x in self.rollout(stiffness, wind)])


def fit(n=8, image_size=48, cameras=4, steps=200, dt=2e-3, frames=4, sigma=None, checkpoint=25,
        fit_what="both", iters=20, noise=0.05, seed=0, log=print):
    """Fit the chosen parameters to the target images with L-BFGS. Returns a dict: losses (per
    closure evaluation), true / initial / fitted stiffness and wind, the relative errors
    (error_init, error_fit: |k - k_true| / k_true for the stiffness, |w - w_true| / |w_true| for
    the wind, the larger of the two for "both"), images (target, initial, fitted) and time."""
    if sigma is None:                                   # one pixel squared, in NDC units
        sigma = (2.0 / image_size) ** 2
    scene = Scene(n, image_size, cameras, steps, dt, frames, sigma, checkpoint)
    k_true, w_true = ds.tensor(K_TRUE, dtype=DTYPE), ds.tensor(WIND_TRUE, dtype=DTYPE)
    with ds.no_grad():
        target = scene.render(k_true, w_true)
    if noise > 0:                                       # pixel noise on the "photographs"
        rng = np.random.default_rng(seed)
        target = target + ds.tensor(noise * rng.normal(size=tuple(target.shape)), dtype=DTYPE)
    fit_k, fit_w = fit_what in ("stiffness", "both"), fit_what in ("wind", "both")
    # k = k_max sigmoid(z) (about k_max e^z for k << k_max): positive, and below the stiffness at which
    # semi-implicit Euler with this dt goes unstable (~ 0.4 m / dt^2), wherever the line search looks
    k_max = 0.2 * MASS / dt ** 2
    if k_max < 4 * K_TRUE:
        raise ValueError(f"dt = {dt} is too large: semi-implicit Euler is stable up to k ~ {2 * k_max:.3g} at "
                         f"this dt, too close to the true k = {K_TRUE} to fit it; "
                         f"use dt <= {np.sqrt(0.2 * MASS / (4 * K_TRUE)):.2g}")
    k0 = K_INIT if fit_k else K_TRUE
    z = ds.tensor(np.log(k0 / (k_max - k0)), dtype=DTYPE, requires_grad=fit_k)
    wind = ds.tensor(WIND_INIT if fit_w else WIND_TRUE, dtype=DTYPE, requires_grad=fit_w)
    params = [p for p, f in ((z, fit_k), (wind, fit_w)) if f]

    def stiffness():
        return k_max * z.sigmoid()

    def loss_fn():
        images = scene.render(stiffness(), wind)
        # squared error summed over pixels, averaged over images
        return ((images - target) ** 2).sum() / (images.shape[0] * images.shape[1]), images

    def errors():
        k = stiffness().item()
        ek = abs(k - K_TRUE) / K_TRUE
        ew = float(np.linalg.norm(wind.detach().numpy() - WIND_TRUE) / np.linalg.norm(WIND_TRUE))
        return k, wind.detach().numpy().copy(), max(ek if fit_k else 0.0, ew if fit_w else 0.0)

    k0, w0, err0 = errors()
    with ds.no_grad():
        initial = loss_fn()[1]
    opt = ds.optim.LBFGS(params, lr=1.0, max_iter=iters, history_size=10, line_search_fn="strong_wolfe",
                         tolerance_grad=1e-10, tolerance_change=1e-12)
    losses = []
    start = time.time()

    def closure():
        opt.zero_grad()
        loss, _ = loss_fn()
        loss.backward()
        losses.append(loss.item())
        k, w, err = errors()
        log(f"eval {len(losses):3d}  loss {losses[-1]:.4e}  k {k:7.3f}  wind ({w[0]:+.3f}, {w[1]:+.3f}, "
            f"{w[2]:+.3f})  rel. error {err:.2e}  ({time.time() - start:.1f} s)")
        return loss
    opt.step(closure)
    seconds = time.time() - start
    k1, w1, err1 = errors()
    with ds.no_grad():
        fitted = loss_fn()[1]
    return dict(losses=losses, fit=fit_what, k_true=K_TRUE, k_init=k0, k_fit=k1, wind_true=np.array(WIND_TRUE),
                wind_init=w0, wind_fit=w1, error_init=err0, error_fit=err1, seconds=seconds,
                images=dict(target=target.numpy(), initial=initial.numpy(), fitted=fitted.numpy()))


def save_plot(res, filename):
    """Target / initial / fitted silhouettes (a row each: frames x cameras) and the loss; False
    without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False

    def montage(im):                                   # [F, C, H, W] -> [C H, F W] (rows: cameras)
        F, C, H, W = im.shape
        pad = np.pad(im, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=0.5)
        return pad.transpose(1, 2, 0, 3).reshape(C * (H + 2), F * (W + 2))

    imgs = res["images"]
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.8), gridspec_kw=dict(width_ratios=[1, 1, 1, 1.2]))
    def label(k, w):
        return f"k = {k:.4g}, wind = ({w[0]:.2f}, {w[1]:.2f}, {w[2]:.2f})"
    titles = dict(target="target: " + label(res["k_true"], res["wind_true"]),
                  initial="initial guess: " + label(res["k_init"], res["wind_init"]),
                  fitted="fitted: " + label(res["k_fit"], res["wind_fit"]))
    for ax, name in zip(axes, ("target", "initial", "fitted")):
        ax.imshow(montage(imgs[name]), cmap="gray", vmin=0, vmax=1)
        ax.set_title(titles[name], fontsize=9)
        ax.set(xlabel="time ->", ylabel="camera")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[3].semilogy(res["losses"], "o-", ms=3)
    axes[3].set(title=f"image loss (rel. parameter error {res['error_init']:.2g} -> {res['error_fit']:.2g})",
                xlabel="L-BFGS evaluation")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(filename)), exist_ok=True)
    fig.savefig(filename, dpi=100)
    plt.close(fig)
    return True


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=8, help="cloth particles per side")
    p.add_argument("--size", type=int, default=48, help="image size in pixels (square)")
    p.add_argument("--cameras", type=int, default=4, choices=range(1, len(EYES) + 1), help="number of cameras")
    p.add_argument("--steps", type=int, default=200, help="simulation steps")
    p.add_argument("--dt", type=float, default=2e-3, help="time step (s)")
    p.add_argument("--frames", type=int, default=4, help="rendered time steps per camera")
    p.add_argument("--sigma", type=float, default=None,
                   help="SoftRas sharpness in NDC units squared (default: one pixel squared, (2 / size)^2)")
    p.add_argument("--checkpoint", type=int, default=25, help="checkpoint segment length (0: none)")
    p.add_argument("--fit", choices=("stiffness", "wind", "both"), default="both", help="what to recover")
    p.add_argument("--iters", type=int, default=20, help="L-BFGS iterations")
    p.add_argument("--noise", type=float, default=0.05, help="std of Gaussian pixel noise on the target images")
    p.add_argument("--seed", type=int, default=0, help="seed of the pixel noise")
    p.add_argument("--plot", default=DEFAULT_PLOT, help="where to save the figure ('none': no figure)")
    a = p.parse_args(argv)
    res = fit(a.n, a.size, a.cameras, a.steps, a.dt, a.frames, a.sigma, a.checkpoint, a.fit, a.iters,
              a.noise, a.seed)
    print(f"stiffness: true {res['k_true']:g}, initial {res['k_init']:g}, recovered {res['k_fit']:.5g}")
    print("wind:      true ({:+.3f}, {:+.3f}, {:+.3f}), recovered ({:+.4f}, {:+.4f}, {:+.4f})".format(
        *res["wind_true"], *res["wind_fit"]))
    print(f"relative parameter error: {res['error_init']:.3g} -> {res['error_fit']:.3g} "
          f"({len(res['losses'])} evaluations, {res['seconds']:.1f} s)")
    if a.plot.lower() != "none":
        if save_plot(res, a.plot):
            print(f"figure saved to {a.plot}")
        else:
            print("(matplotlib is not installed: no figure; pip install matplotlib)")
    return res


if __name__ == "__main__":
    main()
