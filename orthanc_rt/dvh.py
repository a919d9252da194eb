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

from orthanc_rt.dicom.rtstruct import Roi

METHOD = "voxel centre in contour (even-odd), contour planes, dose interpolated linearly in z"
_MAX_CURVE_POINTS = 1000  # bins of a stored cumulative DVH
_MIN_BIN_GY = 0.01


@dataclass
class RoiSample:
    """The values of the grid voxels inside an ROI and the volume each stands for."""

    values: np.ndarray  # one per voxel (Gy or HU)
    voxel_cc: np.ndarray  # volume of each voxel, cc
    planes_used: int = 0
    planes_outside: list[float] = field(default_factory=list)  # contour z (mm) outside the grid

    @property
    def volume_cc(self) -> float:
        return float(self.voxel_cc.sum())


def plane_mask(polygons: Sequence[np.ndarray], xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """[len(ys), len(xs)] bool: voxel centres inside the polygons (x, y mm) by the even-odd rule.

    A scanline fill, vectorised over all edges of all the plane's polygons
    at once: for every grid row the edges' crossings are counted left of
    each voxel centre; an odd count is inside. Counting all polygons together
    is the XOR that turns inner contours into holes. Edges are half-open in
    y, so a vertex on a row is counted once.
    """
    mask = np.zeros((len(ys), len(xs)), dtype=bool)
    if not len(polygons) or not len(xs) or not len(ys):
        return mask
    start = np.concatenate(polygons)
    end = np.concatenate([np.roll(p, -1, axis=0) for p in polygons])
    y_low, y_high = min(start[:, 1].min(), end[:, 1].min()), max(start[:, 1].max(), end[:, 1].max())
    r0, r1 = np.searchsorted(ys, y_low), np.searchsorted(ys, y_high, side="right")
    if r0 >= r1:
        return mask
    rows = ys[r0:r1]
    (x0, y0), (x1, y1) = start.T, end.T
    crosses = (y0[:, None] <= rows[None, :]) != (y1[:, None] <= rows[None, :])  # [edges, rows]
    edge, row = np.nonzero(crosses)
    t = (rows[row] - y0[edge]) / (y1[edge] - y0[edge])
    x_cross = x0[edge] + t * (x1[edge] - x0[edge])
    column = np.searchsorted(xs, x_cross, side="right")  # first voxel centre right of the crossing
    width = len(xs) + 1
    counts = np.bincount(row * width + column, minlength=(r1 - r0) * width).reshape(r1 - r0, width)
    mask[r0:r1] = (np.cumsum(counts, axis=1)[:, :-1] & 1).astype(bool)
    return mask


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
    thickness = plane_thickness(np.array(list(planes)), sz)
    values, weights, outside = [], [], []
    for z, polygons in planes.items():
        plane = _plane_at(volume, (z - oz) / sz, interpolate_z)
        if plane is None:
            outside.append(z)
            continue
        mask = plane_mask(polygons, xs, ys)
        picked = plane[mask]
        values.append(picked)
        weights.append(np.full(picked.size, sx * sy * thickness / 1000.0))
    cat = (lambda parts: np.concatenate(parts) if parts else np.zeros(0))
    return RoiSample(values=cat(values).astype(np.float64), voxel_cc=cat(weights), planes_used=len(values),
                     planes_outside=outside)


def _plane_at(volume: np.ndarray, k: float, interpolate: bool) -> np.ndarray | None:
    """The [y, x] plane at fractional frame index `k`; None more than half a frame outside."""
    last = volume.shape[0] - 1
    if k < -0.5 or k > last + 0.5:
        return None
    if not interpolate or last == 0:
        return volume[int(np.clip(round(k), 0, last))]
    k = float(np.clip(k, 0, last))
    low = int(np.floor(k))
    high = min(low + 1, last)
    t = k - low
    if t < 1e-6:
        return volume[low]
    return (1 - t) * volume[low] + t * volume[high]


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
    dose, weight = sample.values, sample.voxel_cc
    total = float(weight.sum())
    if dose.size == 0 or total <= 0:
        raise ValueError("the ROI covers no voxel of the grid")
    d_at = _dose_at_volume(dose, weight, total, d_at_volume_pct)
    v_at = {float(d): float(weight[dose >= d].sum() / total * 100.0) for d in v_at_dose_gy}
    peak = float(dose.max())
    width = bin_width_gy or max(_MIN_BIN_GY, peak / _MAX_CURVE_POINTS)
    bins = int(np.floor(peak / width)) + 2
    hist = np.bincount(np.minimum(dose / width, bins - 1).astype(np.int64), weights=weight, minlength=bins)
    cumulative = np.cumsum(hist[::-1])[::-1] / total * 100.0
    return DoseStats(volume_cc=total, d_min=float(dose.min()), d_mean=float(np.average(dose, weights=weight)),
                     d_max=peak, d_at_volume=d_at, v_at_dose=v_at, bin_width_gy=float(width),
                     cumulative_pct=cumulative)


_FINE_BINS = 65536


def _dose_at_volume(dose: np.ndarray, weight: np.ndarray, total: float,
                    percents: Sequence[float]) -> dict[float, float]:
    """D x%: the least dose of the hottest x % of the volume (a histogram instead of sorting every voxel)."""
    low, high = float(dose.min()), float(dose.max())
    if high <= low:
        return {float(p): high for p in percents}
    width = (high - low) / (_FINE_BINS - 1)
    index = ((dose - low) / width).astype(np.int64)
    hist = np.bincount(index, weights=weight, minlength=_FINE_BINS)
    at_or_above = np.cumsum(hist[::-1])[::-1] / total * 100.0  # % of volume in bin i or hotter
    out = {}
    for pct in percents:
        last = int(np.count_nonzero(at_or_above >= pct - 1e-9)) - 1
        out[float(pct)] = low + max(last, 0) * width
    return out


def value_stats(sample: RoiSample) -> dict[str, float]:
    """Mean, min, max and standard deviation of the sampled values (HU)."""
    values = sample.values
    if values.size == 0:
        raise ValueError("the ROI covers no voxel of the grid")
    return {"mean": float(values.mean()), "min": float(values.min()), "max": float(values.max()),
            "std": float(values.std())}
