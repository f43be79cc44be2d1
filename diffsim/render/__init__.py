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
* hard rasterization (``raster.py``): ``rasterize`` (z-buffer -> ``Fragments``: face index, depth,
  barycentrics) and ``interpolate`` (vertex attributes -> pixels, differentiable);
* shading (``shading.py``): ``AmbientLight``, ``DirectionalLight``, ``PointLight``, ``Material``,
  ``lambertian``, ``blinn_phong``, ``sample_texture`` (bilinear) and ``shade_mesh`` (mesh + camera
  + lights -> RGBA, soft or hard);

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
from .mesh import grid_faces  # noqa: E402

__all__ += ["grid_faces"]
from .raster import Fragments, interpolate, rasterize  # noqa: E402
from .shading import (AmbientLight, DirectionalLight, Material, PointLight, blinn_phong, lambertian,  # noqa: E402
                      sample_texture, shade_mesh)

__all__ += ["Fragments", "rasterize", "interpolate", "AmbientLight", "DirectionalLight", "PointLight", "Material",
            "lambertian", "blinn_phong", "sample_texture", "shade_mesh"]
# volume rendering (volume.py), images and metrics (images.py), mesh files via trimesh (io.py)
from .images import image_grid, iou, psnr, save_gif, save_image, to_uint8, turntable  # noqa: E402
from .io import load_mesh, save_mesh  # noqa: E402
from .volume import VolumeRender, render_volume, trilinear_interpolate  # noqa: E402

__all__ += ["render_volume", "trilinear_interpolate", "VolumeRender", "save_image", "save_gif", "image_grid",
            "turntable", "to_uint8", "iou", "psnr", "load_mesh", "save_mesh"]
