"""Shading: lights, materials, Lambertian and Blinn-Phong, texture sampling, and ``shade_mesh``.

Everything here is written with diffsim ops, so it is differentiable w.r.t. every Tensor it
is given: light directions, positions, colours and intensities, material colours and
shininess, normals, positions, albedo, textures and uvs.

Conventions:

* Directions are in world space. ``DirectionalLight.direction`` points from the scene
  *towards* the light (the sun's position on the sky); it need not be unit length. A
  surface with unit normal n receives ``radiance * max(0, n . l)`` with l = the unit
  direction towards the light.
* Colours are RGB, shape [3] (or broadcastable to the points' leading shape + [3]).
* Blinn-Phong: ``albedo * (ka * ambient + kd * sum_l L_l max(0, n.l)) + ks * sum_l L_l
  max(0, n.h)^shininess [n.l > 0]`` with h = normalize(l + e), e the unit direction from the
  point towards the eye, ka / kd / ks the material's ambient / diffuse / specular colours.
* Texture coordinates: u to the right, v *up* (OpenGL / OBJ); (0, 0) is the bottom-left
  corner of the texture image and (1, 1) the top-right; texel (i, j) (row i from the top)
  has its centre at ``((j + 0.5) / Wt, 1 - (i + 0.5) / Ht)``.
"""
from __future__ import annotations

import numpy as np

import diffsim as ds
from diffsim.autodiff.backend import get_xp

from .camera import _Camera
from .mesh import Mesh
from .raster import interpolate, rasterize
from .softras import soft_rasterize

__all__ = ["AmbientLight", "DirectionalLight", "PointLight", "Material", "lambertian", "blinn_phong",
           "sample_texture", "shade_mesh"]

_EPS = 1e-12


def _vec(x, n, name, op, like=None):
    """float / list / Tensor -> Tensor whose last dim is n (a scalar is broadcast)."""
    if not isinstance(x, ds.Tensor):
        dtype = like.dtype if isinstance(like, ds.Tensor) else ds.get_default_dtype()
        a = np.asarray(x, dtype=float)
        if a.ndim == 0 and n > 1:
            a = np.full(n, float(a))
        x = ds.tensor(a, dtype=dtype, device=like.device if isinstance(like, ds.Tensor) else None)
    if n and (x.ndim == 0 or x.shape[-1] != n):
        raise ValueError(f"{op}: {name} must have shape [..., {n}], got {list(x.shape)}")
    return x


def _scalar(x, name, op, like=None):
    if not isinstance(x, ds.Tensor):
        dtype = like.dtype if isinstance(like, ds.Tensor) else ds.get_default_dtype()
        x = ds.tensor(float(x), dtype=dtype)
    return x


def _on(x, like):
    """x moved (differentiably) to ``like``'s device: lights and materials built from floats live on
    the CPU, the mesh may be on a GPU."""
    return x if x.device == like.device else x.to(like.device)


def _unit(v):
    return v / ((v * v).sum(-1, keepdim=True) + _EPS).sqrt()


class AmbientLight:
    """Light from everywhere: every point receives ``color * intensity`` (times the material's
    ambient colour and the albedo). ``color`` [3], ``intensity`` [] -- floats or Tensors."""

    def __init__(self, color=(1.0, 1.0, 1.0), intensity=1.0):
        self.color = _vec(color, 3, "color", "AmbientLight")
        self.intensity = _scalar(intensity, "intensity", "AmbientLight", self.color)

    def radiance(self):
        """Ambient radiance [3]."""
        return self.color * self.intensity


class DirectionalLight:
    """Light from infinitely far away along ``direction`` [3] (from the scene towards the light;
    normalized here), colour ``color`` [3] and ``intensity`` [] -- floats or Tensors."""

    def __init__(self, direction=(0.0, 0.0, -1.0), color=(1.0, 1.0, 1.0), intensity=1.0):
        self.direction = _vec(direction, 3, "direction", "DirectionalLight")
        self.color = _vec(color, 3, "color", "DirectionalLight", self.direction)
        self.intensity = _scalar(intensity, "intensity", "DirectionalLight", self.direction)

    def illuminate(self, points):
        """points [..., 3] -> (l [..., 3] unit direction towards the light, radiance [..., 3] or [3])."""
        return _unit(_on(self.direction, points)) + points * 0, _on(self.color * self.intensity, points)


class PointLight:
    """Light at ``position`` [3] with colour ``color`` [3] and ``intensity`` []; radiance at
    distance d is ``color * intensity / (1 + quadratic * d^2)`` (no fall-off by default)."""

    def __init__(self, position=(0.0, 0.0, -3.0), color=(1.0, 1.0, 1.0), intensity=1.0, quadratic=0.0):
        self.position = _vec(position, 3, "position", "PointLight")
        self.color = _vec(color, 3, "color", "PointLight", self.position)
        self.intensity = _scalar(intensity, "intensity", "PointLight", self.position)
        self.quadratic = float(quadratic)

    def illuminate(self, points):
        """points [..., 3] -> (l [..., 3] unit direction towards the light, radiance [..., 3])."""
        d = _on(self.position, points) - points
        d2 = (d * d).sum(-1, keepdim=True)
        rad = _on(self.color * self.intensity, points)
        if self.quadratic:
            rad = rad / (1.0 + self.quadratic * d2)
        return d / (d2 + _EPS).sqrt(), rad + points * 0


class Material:
    """Reflectance: ``ambient``, ``diffuse``, ``specular`` colours [3] (multiplying the albedo
    for ambient and diffuse) and Blinn-Phong ``shininess`` [] -- floats or Tensors."""

    def __init__(self, ambient=(1.0, 1.0, 1.0), diffuse=(1.0, 1.0, 1.0), specular=(0.0, 0.0, 0.0),
                 shininess=32.0):
        self.ambient = _vec(ambient, 3, "ambient", "Material")
        self.diffuse = _vec(diffuse, 3, "diffuse", "Material", self.ambient)
        self.specular = _vec(specular, 3, "specular", "Material", self.ambient)
        self.shininess = _scalar(shininess, "shininess", "Material", self.ambient)


def _lights(lights, op):
    if lights is None:
        return []
    if isinstance(lights, (AmbientLight, DirectionalLight, PointLight)):
        return [lights]
    lights = list(lights)
    for li in lights:
        if not isinstance(li, (AmbientLight, DirectionalLight, PointLight)):
            raise TypeError(f"{op}: lights must be AmbientLight, DirectionalLight or PointLight, got "
                            f"{type(li).__name__}")
    return lights


def _check_shading_inputs(op, normals, points, albedo):
    if not isinstance(normals, ds.Tensor) or normals.ndim < 1 or normals.shape[-1] != 3:
        raise ValueError(f"{op}: normals must be a Tensor [..., 3], got "
                         f"{list(normals.shape) if isinstance(normals, ds.Tensor) else type(normals).__name__}")
    if points is not None and (not isinstance(points, ds.Tensor) or points.shape[-1:] != (3,)):
        raise ValueError(f"{op}: points must be a Tensor [..., 3] like normals {list(normals.shape)}, got "
                         f"{list(points.shape) if isinstance(points, ds.Tensor) else type(points).__name__}")
    albedo = _vec(1.0 if albedo is None else albedo, 3, "albedo", op, normals)
    return albedo


def _shade(op, normals, points, albedo, lights, material, eye, specular, view_dir=None):
    albedo = _on(_check_shading_inputs(op, normals, points, albedo), normals)
    material = material or Material()
    ka, kd, ks, shin = (_on(x, normals) for x in (material.ambient, material.diffuse, material.specular,
                                                  material.shininess))
    lights = _lights(lights, op)
    n = _unit(normals)
    zero = n * 0
    amb, dif, spec = zero, zero, zero
    if specular:
        if view_dir is not None:
            e = _unit(_vec(view_dir, 3, "view_dir", op, normals)) + zero
        elif eye is None or points is None:
            raise ValueError(f"{op}: needs the eye position [3] or [..., 3] (camera.center) and the points, "
                             "or view_dir")
        else:
            e = _unit(_vec(eye, 3, "eye", op, normals) - points)
    for li in lights:
        if isinstance(li, AmbientLight):
            amb = amb + _on(li.radiance(), normals)
            continue
        if points is None:
            if isinstance(li, PointLight):
                raise ValueError(f"{op}: a PointLight needs the surface points [..., 3]")
            l, rad = li.illuminate(zero)
        else:
            l, rad = li.illuminate(points)
        l, rad = _on(l, normals), _on(rad, normals)
        ndl = (n * l).sum(-1, keepdim=True)
        dif = dif + rad * ds.relu(ndl)
        if specular:
            h = _unit(l + e)
            ndh = (n * h).sum(-1, keepdim=True)
            lit = (ndl > 0) & (ndh > 0)
            base = ds.where(lit, ndh, ds.ones_like(ndh))             # no log(0) in pow's gradient
            spec = spec + rad * ds.where(lit, base ** shin, ds.zeros_like(ndh))
    out = albedo * (ka * amb + kd * dif)
    if specular:
        out = out + ks * spec
    return out


def lambertian(normals, albedo=None, lights=(), points=None, material=None):
    """Lambertian (diffuse + ambient) shading: ``albedo * (ka * sum ambient + kd * sum_l L_l
    max(0, n . l))``.

    normals: [..., 3] (normalized here). albedo: [..., 3] or [3] (default white).
    lights: one light or a list (AmbientLight, DirectionalLight, PointLight).
    points: [..., 3] surface positions (needed for point lights). material: ``Material``
    (default: white ambient and diffuse). Returns RGB [..., 3]."""
    return _shade("lambertian", normals, points, albedo, lights, material, None, False)


def blinn_phong(normals, points, eye, albedo=None, lights=(), material=None, view_dir=None):
    """Blinn-Phong shading (module docstring): Lambertian plus ``ks * sum_l L_l max(0, n.h)^shininess``
    on the lit side, h the half vector between the directions to the light and to the eye.

    normals, points: [..., 3] (normals normalized here). eye: the eye position [3] or [..., 3]
    (``camera.center``). albedo: [..., 3] or [3] (default white). lights: as ``lambertian``.
    material: ``Material`` (default: no specular). view_dir: instead of ``eye``, the direction
    [3] or [..., 3] from the surface towards the viewer (an orthographic camera's -forward).
    Returns RGB [..., 3]."""
    return _shade("blinn_phong", normals, points, albedo, lights, material, eye, True, view_dir)


def sample_texture(texture, uv, wrap="clamp"):
    """Bilinear texture lookup, differentiable w.r.t. ``texture`` and ``uv``.

    texture: [Ht, Wt, C] float Tensor. uv: [..., 2] float Tensor, (u right, v up), [0, 1]
    spanning the texture (module docstring). wrap: 'clamp' (edge texels extend outwards) or
    'repeat' (the texture tiles the plane). Returns [..., C].
    Implemented with four gathers (``index_select``) weighted by the fractional offsets, so it
    is differentiable to any order w.r.t. texture values and (piecewise) w.r.t. uv."""
    op = "sample_texture"
    if not isinstance(texture, ds.Tensor) or texture.ndim != 3 or 0 in texture.shape:
        raise ValueError(f"{op}: texture must be a Tensor [Ht, Wt, C] (non-empty), got "
                         f"{list(texture.shape) if isinstance(texture, ds.Tensor) else type(texture).__name__}")
    if not isinstance(uv, ds.Tensor) or uv.ndim < 1 or uv.shape[-1] != 2:
        raise ValueError(f"{op}: uv must be a Tensor [..., 2], got "
                         f"{list(uv.shape) if isinstance(uv, ds.Tensor) else type(uv).__name__}")
    if uv.dtype != texture.dtype:
        raise ValueError(f"{op}: texture ({texture.dtype}) and uv ({uv.dtype}) must have the same dtype")
    if wrap not in ("clamp", "repeat"):
        raise ValueError(f"{op}: wrap must be 'clamp' or 'repeat', got {wrap!r}")
    Ht, Wt, C = texture.shape
    lead = uv.shape[:-1]
    uvf = uv.reshape(-1, 2)
    x = uvf[:, 0] * Wt - 0.5                      # continuous texel coordinates (centres at integers)
    y = (1.0 - uvf[:, 1]) * Ht - 0.5
    x0 = x.detach().floor()
    y0 = y.detach().floor()
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    # integer texel indices computed on the tensors' own device (numpy or cupy): no host round-trip
    xp = get_xp(x0._data)
    x0n, y0n = x0._data.astype(np.int64), y0._data.astype(np.int64)

    def idx(i, j):
        if wrap == "clamp":
            i, j = xp.clip(i, 0, Ht - 1), xp.clip(j, 0, Wt - 1)
        else:
            i, j = xp.mod(i, Ht), xp.mod(j, Wt)
        return ds.tensor(i * Wt + j, device=texture.device)

    flat = texture.reshape(Ht * Wt, C)
    t00 = flat.index_select(0, idx(y0n, x0n))
    t01 = flat.index_select(0, idx(y0n, x0n + 1))
    t10 = flat.index_select(0, idx(y0n + 1, x0n))
    t11 = flat.index_select(0, idx(y0n + 1, x0n + 1))
    out = (t00 * (1 - fx) + t01 * fx) * (1 - fy) + (t10 * (1 - fx) + t11 * fx) * fy
    return out.reshape(*lead, C)


def _albedo(mesh, colors):
    """Per-vertex albedo [V, 3] or None (white)."""
    if colors is not None:
        return colors
    if mesh.texture is not None:
        return sample_texture(mesh.texture, mesh.uvs)
    return mesh.colors


def shade_mesh(mesh, camera, lights=(), material=None, image_size=None, mode="soft", sigma=1e-4, gamma=1e-4,
               shading="blinn_phong", background=None, colors=None, **kw):
    """Shaded RGBA image of ``mesh`` seen by ``camera``: [H, W, 4] for one camera ([3, 3] R), or
    [B, H, W, 4] for a batch of B cameras (as ``render_rgba``); alpha is the silhouette.

    mesh: ``Mesh``; its albedo is ``colors`` [V, 3] if given, else the texture sampled at the
    uvs (``mesh.texture`` + ``mesh.uvs``), else ``mesh.colors`` [V, 3], else white.
    lights: a light or a list of them. material: ``Material`` (default: white, no specular).
    shading: 'blinn_phong' or 'lambertian'. background: RGB (constant; default black).
    mode='soft': shade at the vertices (world vertex normals and positions, the eye at
    ``camera.center``, or the view direction -forward for an orthographic camera; Gouraud
    shading, textures sampled at the vertex uvs), then aggregate the colours with
    ``soft_rasterize`` (``sigma``, ``gamma``, ``kw``). Gradients flow to vertex positions
    (through the silhouette, depth and normals), colours, texture, uvs, lights, material and
    camera pose / intrinsics.
    mode='hard': ``rasterize`` + ``interpolate`` (perspective-correct for a perspective camera)
    of positions, normals and albedo (or uvs, then per-pixel texture lookup), shaded per pixel;
    alpha is the hard coverage. A fast preview: gradients flow to everything shaded (vertex
    positions through normals and positions, colours, texture, lights, material, eye) but not
    through coverage or the projection."""
    op = "shade_mesh"
    if not isinstance(mesh, Mesh):
        raise TypeError(f"{op}: expected a Mesh, got {type(mesh).__name__}")
    if not isinstance(camera, _Camera):
        raise TypeError(f"{op}: expected a PerspectiveCamera or OrthographicCamera, got {type(camera).__name__}")
    if mode not in ("soft", "hard"):
        raise ValueError(f"{op}: mode must be 'soft' or 'hard', got {mode!r}")
    if shading not in ("blinn_phong", "lambertian"):
        raise ValueError(f"{op}: shading must be 'blinn_phong' or 'lambertian', got {shading!r}")
    if colors is not None:
        colors = _vec(colors, 3, "colors", op, mesh.verts)
        if colors.shape != (mesh.num_verts, 3):
            raise ValueError(f"{op}: colors must be [V={mesh.num_verts}, 3], got {list(colors.shape)}")
    elif mesh.texture is None and mesh.colors is not None and mesh.colors.shape[-1] != 3:
        raise ValueError(f"{op}: mesh.colors must be RGB [V, 3] to be shaded, got {list(mesh.colors.shape)}")
    size = image_size or camera.image_size
    bg = np.broadcast_to(np.asarray(0.0 if background is None else background, float), (3,))
    batched = camera.R.ndim == 3
    # the eye: camera centre (perspective) or the direction towards the camera (orthographic)
    eye = camera.center if camera.perspective else -camera.R[..., 2, :]     # [B?, 3]
    verts, faces = mesh.verts, mesh.faces
    vn = mesh.vertex_normals()

    def shade(n, p, alb, e):
        if shading == "lambertian":
            return lambertian(n, alb, lights, p, material)
        if camera.perspective:
            return blinn_phong(n, p, e, alb, lights, material)
        return blinn_phong(n, p, None, alb, lights, material, view_dir=e)

    if mode == "soft":
        alb = _albedo(mesh, colors)
        e = eye[..., None, :] if batched else eye                # [B, 1, 3] against [V, 3] -> [B, V, 3]
        rgb = shade(vn, verts, alb, e)
        if batched and rgb.ndim == 2:
            rgb = rgb.expand(camera.R.shape[0], *rgb.shape)
        scr = camera.to_ndc(verts)
        return soft_rasterize(scr, mesh.faces_np, size, sigma=sigma, gamma=gamma, colors=rgb,
                              background=tuple(bg), mode="rgba", near=camera.near, far=camera.far,
                              **{"cull_near": camera.near, **kw})
    scr = camera.to_ndc(verts)
    frags = rasterize(scr.detach(), mesh.faces_np, size, near=camera.near, perspective_correct=camera.perspective)
    B, H, W = frags.face_index.shape
    p = interpolate(verts, faces, frags)                         # [B, H, W, 3]
    n = interpolate(vn, faces, frags)
    if colors is None and mesh.texture is not None:
        alb = sample_texture(mesh.texture, interpolate(mesh.uvs, faces, frags))
    else:
        alb = colors if colors is not None else mesh.colors
        alb = None if alb is None else interpolate(alb, faces, frags)
    e = eye[:, None, None, :] if batched else eye
    rgb = shade(n, p, alb, e)
    mask = frags.mask[..., None]
    bgt = ds.tensor(bg.copy(), dtype=rgb.dtype, device=rgb.device)
    rgb = ds.where(mask, rgb, bgt + rgb * 0)
    out = ds.cat([rgb, mask.to(rgb.dtype)], -1)
    return out if batched else out[0]
