"""Images: saving (PNG / JPEG / ..., GIF animations), image grids, turntables, and metrics.

Images are ``[H, W]`` or ``[H, W, C]`` (C = 1, 3 or 4; channels last, as the renderers return
them), float values in [0, 1] (clipped when saved) or uint8. Tensors and numpy arrays are both
accepted. Saving needs pillow (the ``viz`` extra: ``pip install "diffsim[viz]"``); files are
written atomically (a temporary name in the same folder, then a rename), so a crash never
leaves a half-written image behind.

Metrics: ``iou`` (soft or thresholded) and ``psnr``, differentiable where that means something.
"""
from __future__ import annotations

import math
import os
import tempfile

import numpy as np

import diffsim as ds

__all__ = ["save_image", "save_gif", "image_grid", "turntable", "iou", "psnr", "to_uint8"]


def _pil(op):
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(f"{op} needs pillow, which is not installed: pip install pillow "
                          f"(or pip install \"diffsim[viz]\")") from None
    return Image


def _np(x):
    if isinstance(x, ds.Tensor):
        return x.detach().cpu().numpy() if hasattr(x, "cpu") else x.detach().numpy()
    return np.asarray(x)


def to_uint8(img, op="to_uint8"):
    """Image [H, W] or [H, W, C] (C in 1, 3, 4; Tensor or array; floats in [0, 1], clipped, or
    uint8) -> uint8 numpy array [H, W] or [H, W, C] (C = 1 squeezed)."""
    a = _np(img)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)) or 0 in a.shape:
        raise ValueError(f"{op}: an image must be [H, W] or [H, W, C] with C in (1, 3, 4), got {list(a.shape)}")
    if a.dtype == np.uint8:
        return a
    if a.dtype.kind not in "fiub":
        raise ValueError(f"{op}: image dtype must be float or uint8, got {a.dtype}")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise ValueError(f"{op}: image {list(a.shape)} contains NaN or inf")
    return (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _atomic(path, write, op):
    """Call write(tmp_path) for a temporary file beside ``path``, then rename it to ``path``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    base, ext = os.path.splitext(os.path.basename(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=f".tmp{ext}", dir=folder)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    return path


def _format(Image, path, op):
    ext = os.path.splitext(os.fspath(path))[1].lower()
    fmt = Image.registered_extensions().get(ext)
    if fmt is None:
        raise ValueError(f"{op}: cannot tell the image format from the file name {os.fspath(path)!r}; use an "
                         f"extension such as .png, .jpg or .gif")
    return fmt


def save_image(img, path):
    """Save an image [H, W] or [H, W, C] (C in 1, 3, 4; Tensor or array, floats in [0, 1] or
    uint8) to ``path``; the format comes from the extension (.png, .jpg, ...). Atomic. Returns
    the path. Needs pillow (ImportError saying how to install it otherwise)."""
    Image = _pil("save_image")
    a = to_uint8(img, "save_image")
    fmt = _format(Image, path, "save_image")
    if fmt == "JPEG" and a.ndim == 3 and a.shape[-1] == 4:
        a = a[..., :3]
    im = Image.fromarray(a)
    return _atomic(path, lambda tmp: im.save(tmp, format=fmt), "save_image")


def save_gif(frames, path, fps=10, loop=0):
    """Save frames (a sequence of images [H, W(, C)] or an array [N, H, W(, C)], all one size)
    as an animated GIF at ``fps`` frames per second (``loop=0``: forever). Atomic. Returns the
    path. Needs pillow."""
    Image = _pil("save_gif")
    frames = list(frames) if not isinstance(frames, (np.ndarray, ds.Tensor)) else [f for f in frames]
    if not frames:
        raise ValueError("save_gif: no frames")
    if not fps > 0:
        raise ValueError(f"save_gif: fps must be > 0, got {fps}")
    arrs = [to_uint8(f, "save_gif") for f in frames]
    if any(a.shape != arrs[0].shape for a in arrs):
        raise ValueError(f"save_gif: all frames must have one shape, got {sorted({a.shape for a in arrs})}")
    ims = [Image.fromarray(a[..., :3] if a.ndim == 3 else a).convert("RGB") for a in arrs]
    dur = max(int(round(1000.0 / fps)), 1)

    def write(tmp):
        ims[0].save(tmp, format="GIF", save_all=True, append_images=ims[1:], duration=dur, loop=loop)
    return _atomic(path, write, "save_gif")


def image_grid(images, nrow=8, padding=0, pad_value=0.0):
    """Tile images [N, H, W, C] (or [N, H, W]) into one image [rows * H', nrow * W', C] with
    ``rows = ceil(N / nrow)`` and ``H' = H + padding`` etc. (``padding`` pixels of
    ``pad_value`` after each image; empty cells filled with ``pad_value``). A Tensor gives a
    Tensor (differentiable), an array gives an array."""
    is_t = isinstance(images, ds.Tensor)
    if not is_t:
        images = np.asarray(images)
    if images.ndim not in (3, 4) or images.shape[0] == 0:
        raise ValueError(f"image_grid: images must be [N, H, W, C] or [N, H, W] with N > 0, got "
                         f"{list(images.shape)}")
    if int(nrow) < 1 or int(padding) < 0:
        raise ValueError(f"image_grid: need nrow >= 1 and padding >= 0, got nrow={nrow}, padding={padding}")
    squeeze = images.ndim == 3
    x = images[..., None] if squeeze else images
    N, H, W, C = x.shape
    nrow = min(int(nrow), N)
    rows = -(-N // nrow)
    p = int(padding)

    def fill(*shape):
        if is_t:
            return ds.full(shape, float(pad_value), dtype=x.dtype, device=x.device)
        return np.full(shape, pad_value, dtype=x.dtype)
    cat = ds.cat if is_t else np.concatenate
    if p:
        x = cat([x, fill(N, p, W, C)], 1)
        x = cat([x, fill(N, H + p, p, C)], 2)
    if rows * nrow > N:
        x = cat([x, fill(rows * nrow - N, H + p, W + p, C)], 0)
    x = x.reshape(rows, nrow, H + p, W + p, C)
    x = x.permute(0, 2, 1, 3, 4) if is_t else x.transpose(0, 2, 1, 3, 4)
    x = x.reshape(rows * (H + p), nrow * (W + p), C)
    return x[..., 0] if squeeze else x


def turntable(render_fn, n_frames=36, path=None, fps=12):
    """Render a turntable: ``render_fn(azimuth)`` -> image [H, W(, C)] for ``n_frames`` azimuths
    ``2 pi k / n_frames`` (radians, k = 0..n_frames-1), called under ``ds.no_grad()``. Returns
    the frames as a uint8 array [n_frames, H, W(, C)]; with ``path`` also saves them as a GIF
    (``save_gif``, needs pillow)."""
    if int(n_frames) < 1:
        raise ValueError(f"turntable: n_frames must be >= 1, got {n_frames}")
    frames = []
    with ds.no_grad():
        for k in range(int(n_frames)):
            frames.append(to_uint8(render_fn(2.0 * math.pi * k / int(n_frames)), "turntable"))
    if any(f.shape != frames[0].shape for f in frames):
        raise ValueError(f"turntable: render_fn returned images of different shapes "
                         f"{sorted({f.shape for f in frames})}")
    out = np.stack(frames)
    if path is not None:
        save_gif(out, path, fps=fps)
    return out


def _pair(a, b, op):
    if not isinstance(a, ds.Tensor) and not isinstance(b, ds.Tensor):
        a = ds.tensor(np.asarray(a, dtype=float), dtype=ds.float64)
    if not isinstance(a, ds.Tensor):
        a = ds.tensor(np.asarray(a, dtype=float), dtype=b.dtype, device=b.device)
    if not isinstance(b, ds.Tensor):
        b = ds.tensor(np.asarray(b, dtype=float), dtype=a.dtype, device=a.device)
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"{op}: a and b must have the same shape, got {list(a.shape)} and {list(b.shape)}")
    if not a.is_floating_point():
        a = a.to(ds.float64) if hasattr(a, "to") else a
    if not b.is_floating_point():
        b = b.to(a.dtype)
    return a, b


def iou(a, b, threshold=None, dim=None, eps=1e-8):
    """Intersection over union of two masks / silhouettes of one shape (Tensors or arrays, values
    in [0, 1]). Soft (default): ``sum(a b) / sum(a + b - a b)``, differentiable. With
    ``threshold``: of the binary masks ``a > threshold``, ``b > threshold`` (no gradient).
    ``dim``: the dims reduced (default all -> a 0-d Tensor; e.g. ``dim=(-2, -1)`` per image of
    [B, H, W]). Two empty masks have IoU 1."""
    a, b = _pair(a, b, "iou")
    if threshold is not None:
        a = (a.detach() > threshold).to(a.dtype)
        b = (b.detach() > threshold).to(b.dtype)
    inter = a * b
    union = a + b - inter
    dims = tuple(range(a.ndim)) if dim is None else dim
    i_s, u_s = inter.sum(dim=dims), union.sum(dim=dims)
    empty = (u_s.detach() <= eps).to(a.dtype)
    return (i_s + empty) / (u_s + empty)


def psnr(a, b, max_val=1.0, dim=None):
    """Peak signal-to-noise ratio ``10 log10(max_val^2 / mean((a - b)^2))`` in dB between two
    images of one shape (Tensors or arrays); ``dim``: the dims averaged (default all -> 0-d;
    e.g. ``dim=(-3, -2, -1)`` per image of [B, H, W, C]). Differentiable; identical images
    give inf."""
    a, b = _pair(a, b, "psnr")
    if not max_val > 0:
        raise ValueError(f"psnr: max_val must be > 0, got {max_val}")
    dims = tuple(range(a.ndim)) if dim is None else dim
    mse = ((a - b) ** 2).mean(dim=dims)
    with np.errstate(divide="ignore"):
        return (10.0 / math.log(10.0)) * (2.0 * math.log(max_val) - ds.log(mse))
