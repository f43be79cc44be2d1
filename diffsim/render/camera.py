"""Cameras: pose (world -> view), intrinsics (view -> pixels / NDC), projection, rays.

Conventions (stated once, used everywhere in ``diffsim.render``):

* **World -> view**: ``X_view = R @ X_world + T`` with ``R [B?, 3, 3]``, ``T [B?, 3]``. View
  space is x right, y up, z forward (the camera looks along +z; visible points have z > 0).
  The camera centre in world space is ``-R^T T``.
* **Pixels**: ``(u, v)`` with u to the right and v *down*; pixel ``(i, j)`` (row i, column j)
  covers ``[j, j+1] x [i, i+1]``, its centre at ``(j + 0.5, i + 0.5)``. Image size is
  ``(H, W)``.
* **Perspective**: ``u = cx + fx * x / z``, ``v = cy - fy * y / z`` (fx, fy, cx, cy in pixels).
* **Orthographic**: ``u = cx + fx * x``, ``v = cy - fy * y``.
* **NDC**: ``x_ndc = 2 u / W - 1`` (right = +1), ``y_ndc = 1 - 2 v / H`` (up = +1), so pixel
  centres are at ``-1 + (2 j + 1) / W`` -- the grid ``soft_rasterize`` samples.

Every quantity (R, T, fx, fy, cx, cy) is an ordinary Tensor, so projections are
differentiable w.r.t. pose and intrinsics. A batch of B cameras has ``R [B, 3, 3]``,
``T [B, 3]`` and intrinsics of shape ``[]`` or ``[B]``; points ``[B, N, 3]`` (or ``[N, 3]``,
broadcast) then give ``[B, N, 2]`` pixels.
"""
from __future__ import annotations

import math

import diffsim as ds

from .transforms import axis_angle_to_matrix, quaternion_to_matrix, rotation_6d_to_matrix

__all__ = ["PerspectiveCamera", "OrthographicCamera", "look_at", "rotation_from"]


def _t(x, dtype, name, device=None):
    if isinstance(x, ds.Tensor):
        return x
    if x is None:
        raise ValueError(f"{name} is required")
    return ds.tensor(x, dtype=dtype, device=device)


def _normalize(v):
    return v / (v * v).sum(-1, keepdim=True).sqrt()


def look_at(eye, at=(0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0), dtype=None):
    """Pose of a camera at ``eye`` looking at ``at``: eye, at, up [B?, 3] -> (R [B?, 3, 3], T [B?, 3]).

    R's rows are the camera's right, up and forward axes in world coordinates (orthonormal,
    det +1), T = -R @ eye, so ``R @ eye + T = 0`` and ``at`` lands on the +z axis. ``up`` must
    not be parallel to ``at - eye`` (ValueError). Differentiable w.r.t. eye, at and up."""
    dtype = dtype or (eye.dtype if isinstance(eye, ds.Tensor) else ds.get_default_dtype())
    dev = next((v.device for v in (eye, at, up) if isinstance(v, ds.Tensor)), None)
    eye, at, up = (_t(v, dtype, "look_at", dev) for v in (eye, at, up))
    for n, v in (("eye", eye), ("at", at), ("up", up)):
        if v.shape[-1] != 3:
            raise ValueError(f"look_at: {n} must have shape [..., 3], got {list(v.shape)}")
    fwd = _normalize(at - eye)
    right = ds.cross(up.expand_as(fwd) if up.shape != fwd.shape else up, fwd, dim=-1)
    rn = (right * right).sum(-1)
    if bool((rn.detach() < 1e-12).any()):
        raise ValueError("look_at: up is parallel to the viewing direction at - eye; pick another up vector")
    right = right / rn.sqrt()[..., None]
    true_up = ds.cross(fwd, right, dim=-1)
    R = ds.stack([right, true_up, fwd], -2)
    T = -(R @ eye[..., None])[..., 0]
    return R, T


def rotation_from(rotation, kind="matrix"):
    """Rotation parameters -> matrix [..., 3, 3]. ``kind``: 'matrix' ([..., 3, 3], returned as is),
    'axis_angle' ([..., 3]), 'quaternion' ([..., 4], (w, x, y, z)) or '6d' ([..., 6])."""
    if kind == "matrix":
        return rotation
    fn = {"axis_angle": axis_angle_to_matrix, "quaternion": quaternion_to_matrix,
          "6d": rotation_6d_to_matrix}.get(kind)
    if fn is None:
        raise ValueError(f"rotation_from: kind must be 'matrix', 'axis_angle', 'quaternion' or '6d', got {kind!r}")
    return fn(rotation)


class _Camera:
    perspective = True

    def __init__(self, R, T, image_size, fx, fy, cx, cy, near, far, dtype):
        H, W = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if H <= 0 or W <= 0:
            raise ValueError(f"{type(self).__name__}: image_size must be positive, got {(H, W)}")
        self.image_size = (int(H), int(W))
        dtype = dtype or (R.dtype if isinstance(R, ds.Tensor) else ds.get_default_dtype())
        dev = next((v.device for v in (R, T) if isinstance(v, ds.Tensor)), None)
        self.R = _t(R if R is not None else ds.eye(3, dtype=dtype, device=dev), dtype, "R", dev)
        self.T = _t(T if T is not None else [0.0, 0.0, 0.0], dtype, "T", dev)
        if self.R.shape[-2:] != (3, 3) or self.T.shape[-1] != 3:
            raise ValueError(f"{type(self).__name__}: R must be [B?, 3, 3] and T [B?, 3], got "
                             f"{list(self.R.shape)} and {list(self.T.shape)}")
        self.fx, self.fy, self.cx, self.cy = (_t(v, dtype, n, self.R.device) for v, n in
                                               ((fx, "fx"), (fy, "fy"), (cx, "cx"), (cy, "cy")))
        if not 0 < near < far:
            raise ValueError(f"{type(self).__name__}: need 0 < near < far, got near={near}, far={far}")
        self.near, self.far = float(near), float(far)

    @classmethod
    def from_pose(cls, rotation, translation, kind="axis_angle", **kw):
        """Camera whose R comes from ``rotation`` parameters of ``kind`` ('axis_angle' [B?, 3],
        'quaternion' [B?, 4], '6d' [B?, 6] or 'matrix') and T = ``translation`` [B?, 3]."""
        return cls(R=rotation_from(rotation, kind), T=translation, **kw)

    @property
    def center(self):
        """Camera centre in world space, [B?, 3] (= -R^T T)."""
        return -(self.R.transpose(-1, -2) @ self.T[..., None])[..., 0]

    def _k(self, v):                      # intrinsic [] or [B] -> broadcastable against [B?, N]
        return v[..., None] if v.ndim else v

    def world_to_view(self, points):
        """points [B?, N, 3] world -> [B?, N, 3] view (x right, y up, z forward)."""
        _check_points(points, f"{type(self).__name__}.world_to_view")
        return points @ self.R.transpose(-1, -2) + self.T[..., None, :]

    def view_to_world(self, points):
        """points [B?, N, 3] view -> [B?, N, 3] world (inverse of ``world_to_view``)."""
        return (points - self.T[..., None, :]) @ self.R

    def project(self, points):
        """World points [B?, N, 3] -> (pixels [B?, N, 2] as (u, v), depth [B?, N] = view z)."""
        pv = self.world_to_view(points)
        x, y, z = pv[..., 0], pv[..., 1], pv[..., 2]
        if self.perspective:
            x, y = x / z, y / z
        u = self._k(self.cx) + self._k(self.fx) * x
        v = self._k(self.cy) - self._k(self.fy) * y
        return ds.stack([u, v], -1), z

    def unproject(self, pixels, depth):
        """pixels [B?, N, 2] and view depth [B?, N] -> world points [B?, N, 3] (inverse of ``project``)."""
        u, v = pixels[..., 0], pixels[..., 1]
        x = (u - self._k(self.cx)) / self._k(self.fx)
        y = (self._k(self.cy) - v) / self._k(self.fy)
        if self.perspective:
            x, y = x * depth, y * depth
        return self.view_to_world(ds.stack([x, y, depth], -1))

    def to_ndc(self, points):
        """World points [B?, N, 3] -> screen vertices [B?, N, 3]: (x_ndc, y_ndc, view depth), the
        input ``soft_rasterize`` expects."""
        pix, z = self.project(points)
        H, W = self.image_size
        return ds.stack([pix[..., 0] * (2.0 / W) - 1.0, 1.0 - pix[..., 1] * (2.0 / H), z], -1)

    def _pixel_grid(self, H, W):
        H, W = H or self.image_size[0], W or self.image_size[1]
        dtype, dev = self.R.dtype, self.R.device
        v, u = ds.meshgrid(ds.arange(H, dtype=dtype, device=dev) + 0.5, ds.arange(W, dtype=dtype, device=dev) + 0.5,
                           indexing="ij")
        return u * (self.image_size[1] / W), v * (self.image_size[0] / H)   # [H, W] each

    def rays(self, H=None, W=None):
        """Rays through the pixel centres of an H x W grid spanning the image (default: image_size).
        Returns (origins, directions), each [B?, H, W, 3] in world space; directions unit length."""
        u, v = self._pixel_grid(H, W)
        k = (lambda t: t[..., None, None] if t.ndim else t)
        dx = (u - k(self.cx)) / k(self.fx)
        dy = (k(self.cy) - v) / k(self.fy)
        Rt = self.R.transpose(-1, -2)[..., None, None, :, :]         # [B?, 1, 1, 3, 3]
        if self.perspective:
            d = ds.stack([dx, dy, ds.ones_like(dx)], -1)
            d = (Rt @ d[..., None])[..., 0]
            d = _normalize(d)
            o = self.center[..., None, None, :] + ds.zeros_like(d)
        else:
            p = ds.stack([dx, dy, ds.zeros_like(dx)], -1) - self.T[..., None, None, :]
            o = (Rt @ p[..., None])[..., 0]
            d = self.R[..., 2, :][..., None, None, :] + ds.zeros_like(o)
        return o, d


def _check_points(points, op):
    if not isinstance(points, ds.Tensor) or points.ndim < 2 or points.shape[-1] != 3:
        raise ValueError(f"{op}: points must be a Tensor of shape [B?, N, 3], got "
                         f"{list(points.shape) if isinstance(points, ds.Tensor) else type(points).__name__}")


class PerspectiveCamera(_Camera):
    """Pinhole camera. Give either ``fov`` (vertical field of view in degrees; fx = fy =
    (H / 2) / tan(fov / 2), principal point at the image centre) or intrinsics ``fx, fy, cx,
    cy`` in pixels (Tensors or floats, shape [] or [B]). ``R [B?, 3, 3]``, ``T [B?, 3]``:
    world -> view pose (see the module docstring; ``look_at`` builds one). ``image_size``:
    (H, W) or an int. ``near``/``far``: depth range (used to normalize depth in rasterizing)."""

    def __init__(self, R=None, T=None, image_size=(256, 256), fov=60.0, fx=None, fy=None, cx=None, cy=None,
                 near=0.1, far=100.0, dtype=None):
        H, W = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if fx is None:
            if not 0 < float(fov) < 180:
                raise ValueError(f"PerspectiveCamera: fov must be in (0, 180) degrees, got {fov}")
            fx = (H / 2) / math.tan(math.radians(float(fov)) / 2)
        fy = fx if fy is None else fy
        super().__init__(R, T, (H, W), fx, fy, W / 2 if cx is None else cx, H / 2 if cy is None else cy,
                         near, far, dtype)


class OrthographicCamera(_Camera):
    """Parallel projection. ``scale``: half the visible height in world units (fx = fy =
    (H / 2) / scale), or intrinsics ``fx, fy, cx, cy`` in pixels per world unit. Other
    arguments as ``PerspectiveCamera`` (R [B?, 3, 3], T [B?, 3], intrinsics [] or [B])."""
    perspective = False

    def __init__(self, R=None, T=None, image_size=(256, 256), scale=1.0, fx=None, fy=None, cx=None, cy=None,
                 near=0.1, far=100.0, dtype=None):
        H, W = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if fx is None:
            fx = (H / 2) / float(scale)
        fy = fx if fy is None else fy
        super().__init__(R, T, (H, W), fx, fy, W / 2 if cx is None else cx, H / 2 if cy is None else cy,
                         near, far, dtype)
