"""Triangle meshes: validated container, primitives, normals and shape regularizers.

Faces are ``[F, 3]`` integer vertex indices, counter-clockwise seen from outside, so the
face normal ``(v1 - v0) x (v2 - v0)`` points outward on the primitives. Vertex positions are
an ordinary Tensor (optimize them); topology (faces, edges, adjacency) is fixed integer data
computed once on the host.
"""
from __future__ import annotations

import numpy as np

import diffsim as ds

__all__ = ["Mesh", "icosphere", "uv_sphere", "box", "plane", "cylinder", "face_normals", "vertex_normals",
           "laplacian_smoothing_loss", "cotangent_laplacian_loss", "edge_length_loss", "normal_consistency_loss"]


class Mesh:
    """A triangle mesh. ``verts`` [V, 3] float Tensor (or array), ``faces`` [F, 3] integers in
    [0, V), optional ``colors`` [V, C] per-vertex colours, optional ``uvs`` [V, 2] per-vertex
    texture coordinates (u right, v up, [0, 1] spans the texture; see ``shading.sample_texture``)
    and ``texture`` [Ht, Wt, C] (needs ``uvs``). All are Tensors that may take gradients. Raises
    ValueError (naming the shapes) for an empty mesh, wrong shapes, faces indexing past the
    vertices or non-finite vertices."""

    def __init__(self, verts, faces, colors=None, dtype=None, uvs=None, texture=None):
        if not isinstance(verts, ds.Tensor):
            verts = ds.tensor(np.asarray(verts, dtype=float), dtype=dtype or ds.get_default_dtype())
        fnp = faces.numpy() if isinstance(faces, ds.Tensor) else np.asarray(faces)
        if verts.ndim != 2 or verts.shape[1] != 3 or verts.shape[0] == 0:
            raise ValueError(f"Mesh: verts must have shape [V, 3] with V > 0, got {list(verts.shape)}")
        if fnp.ndim != 2 or fnp.shape[1] != 3 or fnp.shape[0] == 0:
            raise ValueError(f"Mesh: faces must have shape [F, 3] with F > 0, got {list(fnp.shape)}")
        if fnp.dtype.kind not in "iu":
            raise ValueError(f"Mesh: faces must be integers, got dtype {fnp.dtype}")
        V = verts.shape[0]
        if fnp.min() < 0 or fnp.max() >= V:
            raise ValueError(f"Mesh: faces [{fnp.shape[0]}, 3] index vertices in [{fnp.min()}, {fnp.max()}] "
                             f"but verts has shape [{V}, 3]; indices must be in [0, {V - 1}]")
        if not bool(ds.isfinite(verts.detach()).all()):
            raise ValueError(f"Mesh: verts [{V}, 3] contain NaN or inf")
        if colors is not None:
            if not isinstance(colors, ds.Tensor):
                colors = ds.tensor(np.asarray(colors, dtype=float), dtype=verts.dtype, device=verts.device)
            if colors.ndim != 2 or colors.shape[0] != V:
                raise ValueError(f"Mesh: colors must have shape [V={V}, C], got {list(colors.shape)}")
        if uvs is not None:
            if not isinstance(uvs, ds.Tensor):
                uvs = ds.tensor(np.asarray(uvs, dtype=float), dtype=verts.dtype, device=verts.device)
            if uvs.ndim != 2 or uvs.shape != (V, 2):
                raise ValueError(f"Mesh: uvs must have shape [V={V}, 2], got {list(uvs.shape)}")
        if texture is not None:
            if not isinstance(texture, ds.Tensor):
                texture = ds.tensor(np.asarray(texture, dtype=float), dtype=verts.dtype, device=verts.device)
            if texture.ndim != 3 or 0 in texture.shape:
                raise ValueError(f"Mesh: texture must have shape [Ht, Wt, C] (non-empty), got {list(texture.shape)}")
            if uvs is None:
                raise ValueError("Mesh: a texture needs per-vertex uvs [V, 2]")
        self.verts, self.colors = verts, colors
        self.uvs, self.texture = uvs, texture
        self.faces_np = fnp.astype(np.int64)
        self.faces = ds.tensor(self.faces_np, device=verts.device)
        self._topo = None

    @property
    def num_verts(self):
        """V, the number of vertices (verts is [V, 3])."""
        return self.verts.shape[0]

    @property
    def num_faces(self):
        """F, the number of faces (faces is [F, 3])."""
        return self.faces_np.shape[0]

    def with_verts(self, verts):
        """The same topology, colours, uvs and texture with new vertex positions [V, 3] (e.g. offset ones)."""
        return Mesh(verts, self.faces_np, self.colors, uvs=self.uvs, texture=self.texture)

    def topology(self):
        """Cached integer topology: dict with 'edges' [E, 2] (unique, i < j), 'edge_faces' [E2, 2]
        (the two faces of each edge shared by exactly two faces), 'edge_of_face' [F, 3]."""
        if self._topo is None:
            f = self.faces_np
            e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])          # [3F, 2]
            es = np.sort(e, 1)
            edges, inv = np.unique(es, axis=0, return_inverse=True)
            inv = inv.reshape(-1)
            face_of = np.tile(np.arange(len(f)), 3)
            order = np.argsort(inv, kind="stable")
            counts = np.bincount(inv, minlength=len(edges))
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
            two = counts == 2
            ef = np.stack([face_of[order[starts[two]]], face_of[order[starts[two] + 1]]], 1)
            self._topo = dict(edges=edges, edge_faces=ef, edge_of_face=inv.reshape(3, -1).T)
        return self._topo

    def face_verts(self):
        """Corner positions [F, 3 corners, 3]."""
        return _face_verts(self.verts, self.faces)

    def face_normals(self, normalize=True):
        """Face normals [F, 3] (unit, or ``normalize=False``: twice-area-weighted)."""
        return face_normals(self.verts, self.faces, normalize)

    def vertex_normals(self):
        """Area-weighted unit vertex normals [V, 3]."""
        return vertex_normals(self.verts, self.faces)

    def face_colors(self):
        """Per-face colours [F, C]: the mean of the face's vertex colours (None without colours)."""
        if self.colors is None:
            return None
        return _face_verts(self.colors, self.faces).mean(1)

    def __repr__(self):
        return f"Mesh(verts={list(self.verts.shape)}, faces={list(self.faces_np.shape)})"


def _face_verts(verts, faces):
    F = faces.shape[0]
    return verts.index_select(0, faces.reshape(-1)).reshape(F, 3, verts.shape[-1])


def face_normals(verts, faces, normalize=True):
    """verts [V, 3], faces [F, 3] (int Tensor) -> normals [F, 3]: (v1 - v0) x (v2 - v0), unit
    length if ``normalize`` (else its length is twice the face area). Differentiable."""
    fv = _face_verts(verts, faces)
    n = ds.cross(fv[:, 1] - fv[:, 0], fv[:, 2] - fv[:, 0], dim=-1)
    if normalize:
        n = n / ((n * n).sum(-1, keepdim=True) + 1e-30).sqrt()
    return n


def vertex_normals(verts, faces):
    """verts [V, 3], faces [F, 3] -> unit vertex normals [V, 3]: the sum of incident faces'
    area-weighted normals, normalized. Differentiable."""
    n = face_normals(verts, faces, normalize=False)                          # [F, 3]
    acc = ds.zeros_like(verts)
    for k in range(3):
        acc = acc.index_add(0, faces[:, k], n)
    return acc / ((acc * acc).sum(-1, keepdim=True) + 1e-30).sqrt()


def _mesh_arg(mesh, op):
    if not isinstance(mesh, Mesh):
        raise TypeError(f"{op}: expected a Mesh, got {type(mesh).__name__}")
    return mesh


def laplacian_smoothing_loss(mesh, verts=None):
    """Uniform Laplacian loss: mean over vertices of |v_i - mean of v_i's neighbours|^2 (scalar).
    ``verts`` [V, 3] overrides ``mesh.verts`` (same topology)."""
    mesh = _mesh_arg(mesh, "laplacian_smoothing_loss")
    v = mesh.verts if verts is None else verts
    e = mesh.topology()["edges"]
    an = np.concatenate([e[:, 0], e[:, 1]])                 # host topology: no device round-trip
    a = ds.tensor(an, device=v.device)
    b = ds.tensor(np.concatenate([e[:, 1], e[:, 0]]), device=v.device)
    deg = np.bincount(an, minlength=v.shape[0]).astype(float)
    nsum = ds.zeros_like(v).index_add(0, a, v.index_select(0, b))
    deg_t = ds.tensor(np.maximum(deg, 1.0)[:, None], dtype=v.dtype, device=v.device)
    lap = v - nsum / deg_t
    return (lap * lap).sum(-1).mean()


def cotangent_laplacian_loss(mesh, verts=None, eps=1e-12):
    """Cotangent Laplacian loss: mean over vertices of |Δv_i|^2 with the discrete
    Laplace-Beltrami operator Δv_i = (1 / A_i) Σ_j w_ij (v_j - v_i), w_ij = (cot α_ij + cot β_ij) / 2
    (the angles opposite edge ij) and A_i one third of the incident faces' area. Δv = -2 H n,
    so a sphere of radius r gives about 4 / r^2. Weights are differentiable (not frozen). Shapes: mesh.verts (or ``verts``) [V, 3] -> scalar Tensor []."""
    mesh = _mesh_arg(mesh, "cotangent_laplacian_loss")
    v = mesh.verts if verts is None else verts
    f = mesh.faces
    fv = _face_verts(v, f)                                           # [F, 3, 3]
    acc = ds.zeros_like(v)
    area = ds.zeros(v.shape[0], dtype=v.dtype, device=v.device)
    cr = ds.cross(fv[:, 1] - fv[:, 0], fv[:, 2] - fv[:, 0], dim=-1)
    dbl_area = ((cr * cr).sum(-1) + eps).sqrt()                      # [F] = 2 * area
    for k in range(3):                                               # angle at corner k, opposite edge (i, j)
        i, j = (k + 1) % 3, (k + 2) % 3
        e1, e2 = fv[:, i] - fv[:, k], fv[:, j] - fv[:, k]
        cot = (e1 * e2).sum(-1) / dbl_area                           # cot = dot / |cross|
        w = (0.5 * cot)[:, None]
        d = fv[:, j] - fv[:, i]
        acc = acc.index_add(0, f[:, i], w * d).index_add(0, f[:, j], -w * d)
        area = area.index_add(0, f[:, k], dbl_area / 6.0)
    lap = acc / (area[:, None] + eps)
    return (lap * lap).sum(-1).mean()


def edge_length_loss(mesh, verts=None, target=0.0):
    """Edge-length loss: mean over unique edges of (|v_i - v_j| - target)^2 (scalar). Shapes: mesh.verts (or ``verts``) [V, 3] -> scalar Tensor []."""
    mesh = _mesh_arg(mesh, "edge_length_loss")
    v = mesh.verts if verts is None else verts
    e = mesh.topology()["edges"]
    d = v.index_select(0, ds.tensor(e[:, 0], device=v.device)) - v.index_select(0, ds.tensor(e[:, 1], device=v.device))
    if target == 0.0:
        return (d * d).sum(-1).mean()
    ln = ((d * d).sum(-1) + 1e-30).sqrt()
    return ((ln - target) ** 2).mean()


def normal_consistency_loss(mesh, verts=None):
    """Normal consistency: mean over edges shared by two faces of 1 - cos(angle between the
    two unit face normals) (scalar; 0 for a plane). Shapes: mesh.verts (or ``verts``) [V, 3] -> scalar Tensor []."""
    mesh = _mesh_arg(mesh, "normal_consistency_loss")
    v = mesh.verts if verts is None else verts
    ef = mesh.topology()["edge_faces"]
    if len(ef) == 0:
        return (v * 0).sum()
    n = face_normals(v, mesh.faces)
    n0 = n.index_select(0, ds.tensor(ef[:, 0], device=v.device))
    n1 = n.index_select(0, ds.tensor(ef[:, 1], device=v.device))
    return (1 - (n0 * n1).sum(-1)).mean()


# ---------------------------------------------------------------- primitives

def _make(verts, faces, dtype, device, colors=None):
    v = ds.tensor(np.asarray(verts, dtype=np.float64), dtype=dtype or ds.get_default_dtype(), device=device)
    return Mesh(v, np.asarray(faces, dtype=np.int64), colors)


def icosphere(subdivisions=2, radius=1.0, center=(0.0, 0.0, 0.0), dtype=None, device=None):
    """Icosahedron subdivided ``subdivisions`` times (each face into 4, new vertices pushed to the
    sphere): V = 10 * 4^s + 2, F = 20 * 4^s (s = 2: 162 vertices, 320 faces -- W4's sphere). Returns a ``Mesh`` (verts [V, 3] on ``device``, faces [F, 3])."""
    if subdivisions < 0:
        raise ValueError(f"icosphere: subdivisions must be >= 0, got {subdivisions}")
    t = (1 + 5 ** 0.5) / 2
    v = np.array([[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t], [0, -1, -t],
                  [0, 1, -t], [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]], float)
    f = np.array([[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4],
                  [11, 10, 2], [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8],
                  [3, 8, 9], [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]])
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    for _ in range(subdivisions):
        e = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), 1)
        edges, inv = np.unique(e, axis=0, return_inverse=True)
        inv = inv.reshape(3, -1).T + len(v)                          # midpoint index of edges 01, 12, 20
        mid = v[edges].mean(1)
        v = np.concatenate([v, mid / np.linalg.norm(mid, axis=1, keepdims=True)])
        a, b, c = f.T
        ab, bc, ca = inv.T
        f = np.concatenate([np.stack([a, ab, ca], 1), np.stack([b, bc, ab], 1), np.stack([c, ca, bc], 1),
                            np.stack([ab, bc, ca], 1)])
    return _make(v * radius + np.asarray(center, float), f, dtype, device)


def uv_sphere(n_lat=16, n_lon=32, radius=1.0, dtype=None, device=None):
    """Latitude-longitude sphere: poles plus (n_lat - 1) rings of n_lon vertices;
    V = n_lon (n_lat - 1) + 2, F = 2 n_lon (n_lat - 1). Returns a ``Mesh`` (verts [V, 3] on ``device``, faces [F, 3])."""
    if n_lat < 2 or n_lon < 3:
        raise ValueError(f"uv_sphere: need n_lat >= 2 and n_lon >= 3, got {n_lat}, {n_lon}")
    th = np.pi * np.arange(1, n_lat) / n_lat
    ph = 2 * np.pi * np.arange(n_lon) / n_lon
    T, P = np.meshgrid(th, ph, indexing="ij")
    ring = np.stack([np.sin(T) * np.cos(P), np.cos(T), -np.sin(T) * np.sin(P)], -1).reshape(-1, 3)
    v = np.concatenate([[[0, 1, 0]], ring, [[0, -1, 0]]])
    S = len(v) - 1
    idx = lambda r, c: 1 + r * n_lon + c % n_lon  # noqa: E731
    f = []
    for c in range(n_lon):
        f.append([0, idx(0, c), idx(0, c + 1)])
        f.append([S, idx(n_lat - 2, c + 1), idx(n_lat - 2, c)])
        for r in range(n_lat - 2):
            f.append([idx(r, c), idx(r + 1, c), idx(r + 1, c + 1)])
            f.append([idx(r, c), idx(r + 1, c + 1), idx(r, c + 1)])
    return _make(v * radius, _orient_outward(v, np.array(f)), dtype, device)


def _orient_outward(v, f):
    """Flip faces of a star-shaped (about the origin) closed mesh whose normal points inward."""
    fv = v[f]
    n = np.cross(fv[:, 1] - fv[:, 0], fv[:, 2] - fv[:, 0])
    bad = (n * fv.mean(1)).sum(1) < 0
    f = f.copy()
    f[bad] = f[bad][:, [0, 2, 1]]
    return f


def box(size=(1.0, 1.0, 1.0), dtype=None, device=None):
    """Axis-aligned box centred at the origin with edge lengths ``size``: 8 vertices, 12 faces. Returns a ``Mesh`` (verts [V, 3] on ``device``, faces [F, 3])."""
    s = np.broadcast_to(np.asarray(size, float), (3,)) / 2
    v = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
    f = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                  [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    return _make(v * s, _orient_outward(v, f), dtype, device)


def plane(size=(1.0, 1.0), subdivisions=1, dtype=None, device=None):
    """Square in the y = 0 plane centred at the origin, normal +y: (n+1)^2 vertices and 2 n^2
    faces for n = ``subdivisions``. Returns a ``Mesh`` (verts [V, 3] on ``device``, faces [F, 3])."""
    n = int(subdivisions)
    if n < 1:
        raise ValueError(f"plane: subdivisions must be >= 1, got {subdivisions}")
    sx, sz = np.broadcast_to(np.asarray(size, float), (2,))
    g = np.linspace(-0.5, 0.5, n + 1)
    X, Z = np.meshgrid(g * sx, g * sz, indexing="ij")
    v = np.stack([X, np.zeros_like(X), Z], -1).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    a = (i * (n + 1) + j).ravel()
    b, c, d = a + n + 1, a + n + 2, a + 1
    f = np.concatenate([np.stack([a, d, c], 1), np.stack([a, c, b], 1)])      # normal +y
    return _make(v, f, dtype, device)


def cylinder(radius=1.0, height=2.0, segments=32, dtype=None, device=None):
    """Closed cylinder along y centred at the origin: two rings of ``segments`` vertices plus two
    cap centres (2 s + 2 vertices, 4 s faces). Returns a ``Mesh`` (verts [V, 3] on ``device``, faces [F, 3])."""
    if segments < 3:
        raise ValueError(f"cylinder: segments must be >= 3, got {segments}")
    s = segments
    ph = 2 * np.pi * np.arange(s) / s
    ring = np.stack([np.cos(ph), np.zeros(s), np.sin(ph)], 1) * radius
    top, bot = ring + [0, height / 2, 0], ring - [0, height / 2, 0]
    v = np.concatenate([top, bot, [[0, height / 2, 0], [0, -height / 2, 0]]])
    k = np.arange(s)
    k1 = (k + 1) % s
    f = np.concatenate([np.stack([k, k1, s + k1], 1), np.stack([k, s + k1, s + k], 1),
                        np.stack([np.full(s, 2 * s), k1, k], 1), np.stack([np.full(s, 2 * s + 1), s + k, s + k1], 1)])
    return _make(v, _orient_outward(v, f), dtype, device)


def grid_faces(n, m=None):
    """Triangles of an ``n x m`` grid of vertices numbered row-major (vertex ``i * m + j`` at grid
    point ``(i, j)``, as in ``physics.MassSpring.cloth``): ``[2 (n-1) (m-1), 3]`` int64, two per
    cell. With vertex ``(i, j)`` at ``i e_u + j e_v`` every face's normal points along
    ``e_v x e_u`` (+y for a flat cloth, +z for ``hanging=True``; ``plane``'s faces)."""
    m = n if m is None else m
    if int(n) != n or int(m) != m or n < 2 or m < 2:
        raise ValueError(f"grid_faces: n and m must be ints >= 2, got {n!r}, {m!r}")
    i, j = np.meshgrid(np.arange(int(n) - 1), np.arange(int(m) - 1), indexing="ij")
    a = (i * int(m) + j).ravel()
    b, c, d = a + int(m), a + int(m) + 1, a + 1
    return np.concatenate([np.stack([a, d, c], 1), np.stack([a, c, b], 1)]).astype(np.int64)
