"""diffsim.render: a differentiable renderer built on the autodiff core (``import diffsim.render``).

* cameras (``camera.py``): ``PerspectiveCamera``, ``OrthographicCamera``, ``look_at``,
  ``rotation_from``; project / unproject / to_ndc / rays, differentiable w.r.t. pose and intrinsics;
* rotations (``transforms.py``): ``axis_angle_to_matrix``, ``quaternion_to_matrix``,
  ``rotation_6d_to_matrix``;
* meshes (``mesh.py``): ``Mesh``, primitives ``icosphere``, ``uv_sphere``, ``box``, ``plane``,
  ``cylinder``; ``face_normals``, ``vertex_normals``; regularizers
  ``laplacian_smoothing_loss``, ``cotangent_laplacian_loss``, ``edge_length_loss``,
  ``normal_consistency_loss``;
* soft rasterization (``softras.py``): ``soft_rasterize`` (one custom op, tiled, hand-written
  backward); ``silhouette`` and ``render_rgba`` (mesh + camera -> image).

Conventions are stated in ``camera.py`` (view space x right / y up / z forward; pixels
v down; NDC y up) and ``softras.py`` (pixel centres in NDC).
"""
from .camera import OrthographicCamera, PerspectiveCamera, look_at, rotation_from
from .mesh import (Mesh, box, cotangent_laplacian_loss, cylinder, edge_length_loss, face_normals, icosphere,
                   laplacian_smoothing_loss, normal_consistency_loss, plane, uv_sphere, vertex_normals)
from .render import render_rgba, silhouette
from .softras import soft_rasterize
from .transforms import axis_angle_to_matrix, quaternion_to_matrix, rotation_6d_to_matrix

__all__ = ["PerspectiveCamera", "OrthographicCamera", "look_at", "rotation_from",
           "axis_angle_to_matrix", "quaternion_to_matrix", "rotation_6d_to_matrix",
           "Mesh", "icosphere", "uv_sphere", "box", "plane", "cylinder", "face_normals", "vertex_normals",
           "laplacian_smoothing_loss", "cotangent_laplacian_loss", "edge_length_loss", "normal_consistency_loss",
           "soft_rasterize", "silhouette", "render_rgba"]
