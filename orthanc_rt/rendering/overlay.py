"""Dose overlays as clinical viewers draw them: a CT slice, the dose colour wash,
isodose lines and structure outlines, as a PNG.

Everything is resampled onto the CT slice: the dose by trilinear
interpolation at the CT voxel centres, the structures as masks on the CT grid.
Axial images have anterior at the top and patient right on the left (radiological
convention); coronal and sagittal images have superior at the top.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from orthanc_rt.dicom.models import CtVolume, DoseGrid
from orthanc_rt.errors import OverlayError

# Window (width, level) in HU, as the usual viewer presets.
WINDOWS = {"soft-tissue": (400.0, 40.0), "lung": (1500.0, -600.0), "bone": (1800.0, 400.0)}
PLANES = ("axial", "coronal", "sagittal")
DEFAULT_LEVELS_PCT = (30.0, 50.0, 80.0, 95.0, 107.0)
_ISODOSE_COLOURS = [(0, 0, 255), (0, 200, 255), (0, 255, 0), (255, 255, 0), (255, 128, 0), (255, 0, 0), (255, 0, 255)]


@dataclass
class Outline:
    name: str
    colour: tuple[int, int, int]
    mask: np.ndarray  # [z, y, x] booleans on the CT grid


def render_png(ct: CtVolume, dose: DoseGrid | None, outlines: Sequence[Outline] = (), *, plane: str = "axial",
               index: int | None = None, window: str = "soft-tissue", levels_pct: Sequence[float] = DEFAULT_LEVELS_PCT,
               reference_gy: float | None = None, wash_threshold_pct: float = 10.0, size: int = 512) -> bytes:
    """PNG of one CT slice (`index` along `plane`, default: the slice through the dose maximum)."""
    if plane not in PLANES:
        raise OverlayError(f"plane: expected one of {list(PLANES)}, got {plane!r}")
    if window not in WINDOWS:
        raise OverlayError(f"window: expected one of {sorted(WINDOWS)}, got {window!r}")
    axis = PLANES.index(plane)  # axial → z (axis 0), coronal → y (axis 1), sagittal → x (axis 2)
    on_ct = _dose_on_ct(ct, dose) if dose is not None else None
    if index is None:
        index = int(np.unravel_index(np.argmax(on_ct), on_ct.shape)[axis]) if on_ct is not None \
            else ct.hu.shape[axis] // 2
    if not 0 <= index < ct.hu.shape[axis]:
        raise OverlayError(f"slice: {index} is outside 0..{ct.hu.shape[axis] - 1} for the {plane} plane")
    width, level = WINDOWS[window]
    grey = np.clip((_plane(ct.hu, axis, index) - (level - width / 2)) / width, 0, 1)
    rgb = np.repeat((grey * 255)[..., None], 3, axis=2)
    if on_ct is not None:
        slab = _plane(on_ct, axis, index)
        reference = reference_gy or float(on_ct.max()) or 1.0
        rgb = _wash(rgb, slab / reference, wash_threshold_pct / 100.0)
    image = Image.fromarray(rgb.astype(np.uint8))
    scale = _scale(ct, axis, image.size, size)
    image = image.resize((max(1, round(image.size[0] * scale[0])), max(1, round(image.size[1] * scale[1]))),
                         Image.BILINEAR)
    draw = ImageDraw.Draw(image)
    if on_ct is not None:
        for k, level_pct in enumerate(sorted(levels_pct)):
            colour = _ISODOSE_COLOURS[min(k, len(_ISODOSE_COLOURS) - 1)]
            _draw_lines(draw, _plane(on_ct, axis, index) >= reference * level_pct / 100.0, scale, colour)
    for outline in outlines:
        _draw_lines(draw, _plane(outline.mask, axis, index), scale, outline.colour, width=2)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def _dose_on_ct(ct: CtVolume, dose: DoseGrid) -> np.ndarray:
    """Trilinear interpolation of the dose at every CT voxel centre (0 outside the dose grid)."""
    from scipy.ndimage import map_coordinates

    nz, ny, nx = ct.hu.shape
    axes = []
    for n, o_ct, s_ct, o_d, s_d in zip((nx, ny, nz), ct.origin_mm, ct.spacing_mm, dose.origin_mm, dose.spacing_mm):
        axes.append((o_ct + s_ct * np.arange(n) - o_d) / s_d)  # CT centres in dose-grid index units
    x, y, z = axes
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    return map_coordinates(np.asarray(dose.dose_gy, dtype=np.float32), [zz, yy, xx], order=1, mode="constant",
                           cval=0.0)


def _plane(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    """Rows top to bottom: anterior→posterior (axial), superior→inferior (coronal, sagittal)."""
    if axis == 0:
        return volume[index]
    cut = volume[:, index, :] if axis == 1 else volume[:, :, index]
    return cut[::-1]  # z grows superior; images grow downwards


def _scale(ct: CtVolume, axis: int, pixels: tuple[int, int], size: int) -> tuple[float, float]:
    """Pixel scale (x, y) giving square millimetres and `size` pixels on the long side."""
    sx, sy, sz = ct.spacing_mm
    col_mm, row_mm = {0: (sx, sy), 1: (sx, sz), 2: (sy, sz)}[axis]
    w_mm, h_mm = pixels[0] * col_mm, pixels[1] * row_mm
    mm_per_pixel = max(w_mm, h_mm) / size
    return col_mm / mm_per_pixel, row_mm / mm_per_pixel


def _wash(rgb: np.ndarray, relative: np.ndarray, threshold: float) -> np.ndarray:
    """Blend a blue→red colour map over the CT where the dose exceeds `threshold` × reference."""
    t = np.clip(relative, 0, 1.1) / 1.1
    colour = np.stack([np.clip(1.5 - np.abs(4 * t - 3), 0, 1), np.clip(1.5 - np.abs(4 * t - 2), 0, 1),
                       np.clip(1.5 - np.abs(4 * t - 1), 0, 1)], axis=-1) * 255
    alpha = np.where(relative >= threshold, 0.45, 0.0)[..., None]
    return rgb * (1 - alpha) + colour * alpha


def _draw_lines(draw: ImageDraw.ImageDraw, region: np.ndarray, scale: tuple[float, float],
                colour: tuple[int, int, int], width: int = 1) -> None:
    """Outline a 2-D boolean region along its voxel edges."""
    region = np.asarray(region, dtype=bool)
    if not region.any():
        return
    sx, sy = scale
    padded = np.pad(region, 1)
    # Horizontal edges between rows r-1 and r, vertical edges between columns c-1 and c.
    rows, cols = np.nonzero(padded[1:, 1:-1] != padded[:-1, 1:-1])
    for r, c in zip(rows, cols):
        draw.line([(c * sx, r * sy), ((c + 1) * sx, r * sy)], fill=colour, width=width)
    rows, cols = np.nonzero(padded[1:-1, 1:] != padded[1:-1, :-1])
    for r, c in zip(rows, cols):
        draw.line([(c * sx, r * sy), (c * sx, (r + 1) * sy)], fill=colour, width=width)
