"""Mesh files (OBJ, PLY, STL, OFF, GLB, ... -- whatever trimesh reads and writes).

The parsing is trimesh's (the optional ``mesh`` extra: ``pip install "diffsim[mesh]"``);
diffsim has no mesh-format parser of its own. ``save_mesh`` writes atomically (a temporary
name in the same folder, then a rename).
"""
from __future__ import annotations

import os

import numpy as np

import diffsim as ds

from .images import _atomic
from .mesh import Mesh

__all__ = ["load_mesh", "save_mesh"]


def _trimesh(op):
    try:
        import trimesh
    except ImportError:
        raise ImportError(f"{op} needs trimesh, which is not installed: pip install trimesh "
                          f"(or pip install \"diffsim[mesh]\")") from None
    return trimesh


def _ext(path, op, trimesh, kind):
    ext = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
    ok = trimesh.exchange.load.available_formats() if kind == "load" else \
        trimesh.exchange.export._mesh_exporters.keys()
    if ext not in ok:
        raise ValueError(f"{op}: unsupported mesh file extension {ext!r} in {os.fspath(path)!r}; trimesh can "
                         f"{kind} {sorted(ok)}")
    return ext


def load_mesh(path, dtype=None, device=None, merge_vertices=False):
    """Read a triangle mesh file -> ``Mesh`` (verts [V, 3] of ``dtype``, default the default
    dtype; faces [F, 3]; per-vertex RGB colours [V, 3] in [0, 1] when the file has them).
    Scenes with several meshes are concatenated; polygons are triangulated by trimesh; vertices
    are kept as written unless ``merge_vertices=True`` (an STL stores 3 per face; merging
    welds coincident ones, as shape regularizers need). Raises FileNotFoundError, ValueError for an unsupported
    extension or a file that is not a readable mesh (truncated, corrupt, or without faces) --
    naming the file -- and ImportError without trimesh."""
    op = "load_mesh"
    trimesh = _trimesh(op)
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{op}: no such file {path!r}")
    ext = _ext(path, op, trimesh, "load")
    try:
        tm = trimesh.load(path, file_type=ext, force="mesh", process=False)
    except Exception as e:                     # trimesh raises many types for bad files
        raise ValueError(f"{op}: could not read {path!r} as a {ext.upper()} mesh (truncated or corrupt?): "
                         f"{type(e).__name__}: {e}") from e
    if merge_vertices and hasattr(tm, "merge_vertices"):
        tm.merge_vertices()
    verts = np.asarray(getattr(tm, "vertices", np.zeros((0, 3))), dtype=np.float64)
    faces = np.asarray(getattr(tm, "faces", np.zeros((0, 3))))
    if verts.ndim != 2 or verts.shape[0] == 0 or faces.ndim != 2 or faces.shape[0] == 0:
        raise ValueError(f"{op}: {path!r} holds no triangles (verts {list(verts.shape)}, faces "
                         f"{list(faces.shape)}); is the file truncated or empty?")
    if faces.min() < 0 or faces.max() >= verts.shape[0] or not np.isfinite(verts).all():
        raise ValueError(f"{op}: {path!r} is corrupt: faces index vertices in [{faces.min()}, {faces.max()}] "
                         f"of {verts.shape[0]}, or vertices are not finite")
    colors = None
    vis = getattr(tm, "visual", None)
    if vis is not None and getattr(vis, "kind", None) == "vertex":
        vc = np.asarray(vis.vertex_colors)
        if vc.shape[:1] == (verts.shape[0],) and vc.shape[-1] >= 3:
            colors = vc[:, :3].astype(np.float64) / 255.0
    dtype = dtype or ds.get_default_dtype()
    v = ds.tensor(verts, dtype=dtype, device=device)
    c = None if colors is None else ds.tensor(colors, dtype=dtype, device=device)
    return Mesh(v, faces.astype(np.int64), colors=c)


def save_mesh(mesh, path):
    """Write ``mesh`` (a ``Mesh``; its verts [V, 3], faces [F, 3] and, if it has them, RGB(A)
    colours [V, 3 or 4] in [0, 1]) to ``path``; the format comes from the extension (.obj,
    .ply, .stl, .off, .glb, ...). Atomic. Returns the path. ImportError without trimesh."""
    op = "save_mesh"
    trimesh = _trimesh(op)
    if not isinstance(mesh, Mesh):
        raise TypeError(f"{op}: expected a Mesh, got {type(mesh).__name__}")
    ext = _ext(path, op, trimesh, "export")
    verts = mesh.verts.detach().numpy().astype(np.float64)
    kw = {}
    if mesh.colors is not None and mesh.colors.shape[-1] in (3, 4):
        c = np.clip(mesh.colors.detach().numpy().astype(np.float64), 0.0, 1.0)
        kw["vertex_colors"] = (c * 255.0 + 0.5).astype(np.uint8)
    tm = trimesh.Trimesh(vertices=verts, faces=mesh.faces_np, process=False, **kw)
    data = tm.export(file_type=ext)
    mode = "w" if isinstance(data, str) else "wb"

    def write(tmp):
        with open(tmp, mode) as f:
            f.write(data)
    return _atomic(path, write, op)
