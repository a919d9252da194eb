"""Dose-volume histograms and ROI statistics from contours on a voxel grid (plain numpy).

How an ROI becomes voxels (the same rules dicompyler-core 0.5.6 uses by
default, which is why it serves as the test oracle):

- The ROI is evaluated on its own contour planes. Each plane is a slab of
  the ROI's plane spacing (the median distance between its planes; one-plane
  ROIs take the grid's slice spacing), centred on the plane.
- In a plane, a grid voxel belongs to the ROI when its centre lies inside
  the plane's polygons by the even-odd rule, so an inner contour (a hole)
  removes what it encloses (XOR). There are no partial voxels: a voxel
  counts fully or not at all, so small ROIs on coarse grids carry a
  discretisation error of the order of their surface × half a voxel.
- The dose of a contour plane that lies between dose frames is interpolated
  linearly in z between the two neighbouring frames (no interpolation of
  contours between planes); planes more than half a frame beyond the dose
  grid are left out and reported.
- CT statistics take the CT slice nearest to each contour plane.

Volumes are in cc (voxel area × slab thickness), doses in Gy.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from orthanc_rt.analysis.dvh_metrics import volume_at_dose
from orthanc_rt.dicom.rtstruct import Roi, next_vertex

METHOD = "voxel centre in contour (even-odd), contour planes, dose interpolated linearly in z"
_MAX_CURVE_POINTS = 1000  # bins of a stored cumulative DVH
_MIN_BIN_GY = 0.01


@dataclass
class RoiSample:
    """The values of the grid voxels inside an ROI and the volume each stands for."""

    values: np.ndarray  # one per voxel (Gy or HU), float32 as the grid holds them
    voxel_cc: float  # the volume each voxel stands for (one slab thickness per ROI, so one value), cc
    planes_used: int = 0
    planes_outside: list[float] = field(default_factory=list)  # contour z (mm) outside the grid

    @property
    def volume_cc(self) -> float:
        return float(self.values.size * self.voxel_cc)


def plane_mask(polygons: Sequence[np.ndarray], xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """[len(ys), len(xs)] bool: voxel centres inside the polygons (x, y mm) by the even-odd rule."""
    mask, r0 = planes_mask([list(polygons)], xs, ys)
    out = np.zeros((len(ys), len(xs)), dtype=bool)
    out[r0:r0 + mask.shape[1]] = mask[0]
    return out


def planes_mask(planes: Sequence[Sequence[np.ndarray]], xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, int]:
    """Even-odd masks of several planes' polygons at once: ([planes, rows, len(xs)] bool, first row).

    A scanline fill vectorised over every edge of every polygon of every
    plane: for each grid row the edges' crossings left of each voxel centre
    are counted; an odd count is inside. Counting a plane's polygons
    together is the XOR that turns inner contours into holes. Edges are
    half-open in y, so a vertex on a row is counted once. Only the rows the
    polygons span are returned (from `first row`).
    """
    count = len(planes)
    polygons = [p for plane in planes for p in plane]
    if not polygons or not len(xs) or not len(ys):
        return np.zeros((count, 0, len(xs)), dtype=bool), 0
    start = np.concatenate(polygons)
    end = start[next_vertex(np.array([len(p) for p in polygons]))]
    plane_of = np.repeat(np.arange(count), [sum(len(p) for p in plane) for plane in planes])
    r0 = int(np.searchsorted(ys, start[:, 1].min()))
    r1 = int(np.searchsorted(ys, start[:, 1].max(), side="right"))
    if r0 >= r1:
        return np.zeros((count, 0, len(xs)), dtype=bool), r0
    rows = ys[r0:r1]
    (x0, y0), (x1, y1) = start.T, end.T
    crosses = (y0[:, None] <= rows[None, :]) != (y1[:, None] <= rows[None, :])  # [edges, rows]
    edge, row = np.nonzero(crosses)
    t = (rows[row] - y0[edge]) / (y1[edge] - y0[edge])
    x_cross = x0[edge] + t * (x1[edge] - x0[edge])
    column = np.searchsorted(xs, x_cross, side="right")  # first voxel centre right of the crossing
    width, height = len(xs) + 1, r1 - r0
    flat = (plane_of[edge] * height + row) * width + column
    counts = np.bincount(flat, minlength=count * height * width).reshape(count, height, width)
    return (np.cumsum(counts, axis=2)[:, :, :-1] & 1).astype(bool), r0


def plane_thickness(plane_z: np.ndarray, default_mm: float) -> float:
    if len(plane_z) < 2:
        return float(default_mm)
    return float(np.median(np.diff(np.sort(plane_z))))


def sample_roi(roi: Roi, volume: np.ndarray, origin_mm: Sequence[float], spacing_mm: Sequence[float], *,
               interpolate_z: bool) -> RoiSample:
    """Values of `volume` ([z, y, x] on the grid) inside `roi`; see the module notes for the rules."""
    planes = roi.planes()
    (ox, oy, oz), (sx, sy, sz) = origin_mm, spacing_mm
    nz, ny, nx = volume.shape
    xs, ys = ox + sx * np.arange(nx), oy + sy * np.arange(ny)
    z = np.array(list(planes), dtype=float)
    thickness = plane_thickness(z, sz)
    k = (z - oz) / sz  # fractional frame index of each contour plane
    on_grid = (k >= -0.5) & (k <= nz - 0.5)
    voxel_cc = sx * sy * thickness / 1000.0
    outside = [float(v) for v in z[~on_grid]]
    if not on_grid.any():
        return RoiSample(values=np.zeros(0, dtype=np.float32), voxel_cc=voxel_cc, planes_outside=outside)
    polygons = list(planes.values())
    masks, r0 = planes_mask([polygons[i] for i in np.flatnonzero(on_grid)], xs, ys)
    rows = slice(r0, r0 + masks.shape[1])
    k = np.clip(k[on_grid], 0, nz - 1)
    if interpolate_z:
        low = np.floor(k).astype(int)
        high = np.minimum(low + 1, nz - 1)
        t = (k - low).astype(np.float32)[:, None, None]
        stack = volume[low, rows] * (1 - t) + volume[high, rows] * t
    else:
        stack = volume[np.rint(k).astype(int), rows]
    return RoiSample(values=stack[masks], voxel_cc=voxel_cc, planes_used=int(on_grid.sum()),
                     planes_outside=outside)


@dataclass
class DoseStats:
    volume_cc: float
    d_min: float
    d_mean: float
    d_max: float
    d_at_volume: dict[float, float]  # % of volume -> Gy (the least dose of the hottest x %)
    v_at_dose: dict[float, float]  # Gy -> % of volume receiving at least that dose
    bin_width_gy: float
    cumulative_pct: np.ndarray  # % of volume receiving >= i * bin_width_gy


def dose_stats(sample: RoiSample, *, d_at_volume_pct: Sequence[float], v_at_dose_gy: Sequence[float],
               bin_width_gy: float | None = None) -> DoseStats:
    """Metrics from the voxel doses: Dmin/Dmax/Dmean/Vx exact, Dx from a 2^16-bin histogram (error < Dmax/65536)."""
    # Every voxel of an ROI stands for the same volume: fractions of the volume are fractions of the count.
    dose, count = sample.values, sample.values.size
    if count == 0 or sample.voxel_cc <= 0:
        raise ValueError("the ROI covers no voxel of the grid")
    d_at = dose_at_volume_binned(dose, d_at_volume_pct)
    v_at = {float(d): volume_at_dose(dose, d) for d in v_at_dose_gy}
    peak = float(dose.max())
    width = bin_width_gy or max(_MIN_BIN_GY, peak / _MAX_CURVE_POINTS)
    bins = int(np.floor(peak / width)) + 2
    hist = np.bincount(np.minimum(dose / width, bins - 1).astype(np.int64), minlength=bins)
    cumulative = np.cumsum(hist[::-1])[::-1] / count * 100.0
    return DoseStats(volume_cc=sample.volume_cc, d_min=float(dose.min()), d_mean=float(dose.mean(dtype=np.float64)),
                     d_max=peak, d_at_volume=d_at, v_at_dose=v_at, bin_width_gy=float(width),
                     cumulative_pct=cumulative)


_FINE_BINS = 65536


def dose_at_volume_binned(dose: np.ndarray, percents: Sequence[float]) -> dict[float, float]:
    """D x%: the least dose of the hottest x % of the volume (dicompyler-core's definition; a histogram
    instead of sorting every voxel). The plans' QA uses `dvh_metrics.dose_at_volume_interpolated`."""
    low, high = float(dose.min()), float(dose.max())
    if high <= low:
        return {float(p): high for p in percents}
    width = (high - low) / (_FINE_BINS - 1)
    index = ((dose - low) / width).astype(np.int64)
    hist = np.bincount(index, minlength=_FINE_BINS)
    # % of the volume in bin i or hotter, from the hottest bin down: non-decreasing, so the bins with at
    # least x % are found by bisection (the hottest bin i with at_or_above[i] >= x % is the last of them).
    at_or_above_from_top = np.cumsum(hist[::-1]) / dose.size * 100.0
    out = {}
    for pct in percents:
        last = _FINE_BINS - int(np.searchsorted(at_or_above_from_top, pct - 1e-9, side="left")) - 1
        out[float(pct)] = low + max(last, 0) * width
    return out


def value_stats(sample: RoiSample) -> dict[str, float]:
    """Mean, min, max and standard deviation of the sampled values (HU)."""
    values = sample.values
    if values.size == 0:
        raise ValueError("the ROI covers no voxel of the grid")
    return {"mean": float(values.mean(dtype=np.float64)), "min": float(values.min()), "max": float(values.max()),
            "std": float(values.std(dtype=np.float64))}
