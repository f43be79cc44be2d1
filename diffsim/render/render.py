"""Convenience pipelines: mesh + camera -> image, built from camera.to_ndc and soft_rasterize."""
from __future__ import annotations

from .camera import _Camera
from .mesh import Mesh
from .softras import soft_rasterize

__all__ = ["silhouette", "render_rgba"]


def _screen(mesh, camera, op):
    if not isinstance(mesh, Mesh):
        raise TypeError(f"{op}: expected a Mesh, got {type(mesh).__name__}")
    if not isinstance(camera, _Camera):
        raise TypeError(f"{op}: expected a PerspectiveCamera or OrthographicCamera, got {type(camera).__name__}")
    return camera.to_ndc(mesh.verts)                     # [B?, V, 3]


def silhouette(mesh, camera, image_size=None, sigma=1e-4, **kw):
    """Soft silhouette of ``mesh`` seen by ``camera``: [H, W] (or [B, H, W] for a batch of B
    cameras), values in [0, 1]. ``image_size`` defaults to ``camera.image_size``; the camera's
    intrinsics are defined for its own image_size and NDC spans the image, so a different
    ``image_size`` renders the same view at another resolution. Differentiable w.r.t.
    ``mesh.verts`` and the camera's pose and intrinsics. ``kw`` go to ``soft_rasterize``."""
    scr = _screen(mesh, camera, "silhouette")
    return soft_rasterize(scr, mesh.faces_np, image_size or camera.image_size, sigma=sigma,
                          near=camera.near, far=camera.far,
                          **{"cull_near": camera.near, **kw})


def render_rgba(mesh, camera, image_size=None, sigma=1e-4, gamma=1e-4, colors=None, background=None, **kw):
    """Soft RGBA image [H, W, C + 1] (or [B, H, W, C + 1] for B cameras) of ``mesh`` seen by
    ``camera``, colours interpolated from the vertices. ``colors``: per-vertex colours [V, C]
    (default: ``mesh.colors``); pass ``face_colors=[F, C]`` in ``kw`` instead for flat faces."""
    scr = _screen(mesh, camera, "render_rgba")
    if colors is None and kw.get("face_colors") is None:
        colors = mesh.colors
        if colors is None:
            raise ValueError("render_rgba: the mesh has no vertex colours; pass colors [V, C] or face_colors [F, C]")
    return soft_rasterize(scr, mesh.faces_np, image_size or camera.image_size, sigma=sigma, gamma=gamma,
                          colors=colors, background=background, mode="rgba", near=camera.near, far=camera.far,
                          **{"cull_near": camera.near, **kw})
