"""Dose-averaged LET (LETd) maps: where they mean something, their per-ROI statistics and dose-LET volume
histograms. Pure numpy.

Threshold. MCsquare scores LETd in every voxel a particle deposits energy in. Where the dose is a small
fraction of the maximum (beyond the distal fall-off, far in the lateral penumbra) that energy comes from a
handful of slow protons and secondaries, and LETd is a ratio of two noisy small numbers: on a 100 MeV pencil
beam in water at 1e6 primaries it reaches 100 keV/µm two millimetres beyond the range, against 6.5 keV/µm at
the Bragg peak (measured here, docs/physics.md#let). Such voxels carry no clinically relevant dose, so the map
keeps LETd where the dose is at least LET_DOSE_THRESHOLD_FRACTION (1 %) of the dose maximum and is 0 elsewhere.
The statistics below use the same voxels (a voxel of the ROI below the threshold does not count).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from orthanc_rt.dicom.models import DoseGrid, LetGrid

LET_DOSE_THRESHOLD_FRACTION = 0.01
# Dose-LET volume histogram bins: at most this many per axis, so a histogram of one ROI stays a few thousand
# numbers however high its dose or LETd goes; the bin widths are rounded up to 1, 2 or 5 × a power of ten.
DLVH_MAX_BINS = 50


@dataclass(frozen=True)
class LetStatistics:
    """LETd over one ROI's voxels with dose at or above the map's threshold (keV/µm)."""

    mean_kev_um: float
    max_kev_um: float
    l50_kev_um: float  # median LETd of those voxels
    voxels: int


def restrict_let(let: LetGrid, dose: DoseGrid, threshold_fraction: float = LET_DOSE_THRESHOLD_FRACTION) -> LetGrid:
    """`let` with 0 wherever `dose` is below `threshold_fraction` of its maximum (same grid required)."""
    if not (0.0 <= threshold_fraction < 1.0):
        raise ValueError(f"threshold_fraction must be in [0, 1), not {threshold_fraction}")
    values, doses = np.asarray(let.let_kev_um), np.asarray(dose.dose_gy)
    if values.shape != doses.shape:
        raise ValueError(f"LET grid {values.shape} and dose grid {doses.shape} differ")
    if not (np.allclose(let.origin_mm, dose.origin_mm, atol=1e-3)
            and np.allclose(let.spacing_mm, dose.spacing_mm, atol=1e-3)):
        raise ValueError("LET and dose grids have different origins or spacings")
    threshold = threshold_fraction * float(doses.max()) if doses.size else 0.0
    kept = np.where(doses >= threshold, values, 0.0).astype(np.float32) if threshold > 0 else \
        np.where(doses > 0, values, 0.0).astype(np.float32)
    return replace(let, let_kev_um=kept, threshold_gy=threshold)


def let_on_region(let: LetGrid, region: DoseGrid) -> LetGrid:
    """`let` cut to `region`'s grid, which must be a box of the same voxels (the dose after cropping)."""
    if not np.allclose(let.spacing_mm, region.spacing_mm, atol=1e-3):
        raise ValueError("the region's spacing is not the LET grid's")
    start = [round((r - o) / s) for r, o, s in zip(region.origin_mm, let.origin_mm, let.spacing_mm)]  # x, y, z
    if any(abs(r - (o + i * s)) > 1e-3 for r, o, s, i in zip(region.origin_mm, let.origin_mm, let.spacing_mm, start)):
        raise ValueError("the region's voxels are not voxels of the LET grid")
    nz, ny, nx = np.asarray(region.dose_gy).shape
    x0, y0, z0 = start
    full = np.asarray(let.let_kev_um)
    if min(start) < 0 or z0 + nz > full.shape[0] or y0 + ny > full.shape[1] or x0 + nx > full.shape[2]:
        raise ValueError("the region reaches outside the LET grid")
    kept = np.where(np.asarray(region.dose_gy) > 0, full[z0:z0 + nz, y0:y0 + ny, x0:x0 + nx], 0.0)
    return replace(let, let_kev_um=np.ascontiguousarray(kept, dtype=np.float32), origin_mm=region.origin_mm)


def let_statistics(let: LetGrid, dose: DoseGrid, mask: np.ndarray) -> LetStatistics | None:
    """LETd mean, maximum and median (L50) over the ROI `mask` ([z, y, x] on the grid) where the dose is at or
    above the map's threshold; None when no voxel of the ROI is."""
    values, doses, mask = np.asarray(let.let_kev_um), np.asarray(dose.dose_gy), np.asarray(mask, dtype=bool)
    if not (values.shape == doses.shape == mask.shape):
        raise ValueError(f"LET {values.shape}, dose {doses.shape} and ROI mask {mask.shape} differ in shape")
    selected = values[mask & (doses >= let.threshold_gy) & (doses > 0)].astype(np.float64)
    if selected.size == 0:
        return None
    return LetStatistics(mean_kev_um=float(selected.mean()), max_kev_um=float(selected.max()),
                         l50_kev_um=float(np.median(selected)), voxels=int(selected.size))


@dataclass(frozen=True)
class DoseLetHistogram:
    """Cumulative dose-LET volume histogram of one ROI: volume_pct[i][j] is the percentage of the ROI's voxels
    with dose >= dose_gy[i] AND LETd >= let_kev_um[j]. Row 0 (dose >= 0) is the ROI's LET volume histogram,
    column 0 (LETd >= 0) its dose volume histogram. Voxels below the map's dose threshold have LETd 0: they
    count in column 0 only."""

    dose_gy: list[float]
    let_kev_um: list[float]
    volume_pct: list[list[float]]
    voxels: int


def dose_let_volume_histogram(let: LetGrid, dose: DoseGrid, mask: np.ndarray,
                              max_bins: int = DLVH_MAX_BINS) -> DoseLetHistogram | None:
    """The ROI's cumulative dose-LET volume histogram (`mask` [z, y, x] on the grid); None for an empty ROI."""
    values, doses, mask = np.asarray(let.let_kev_um), np.asarray(dose.dose_gy), np.asarray(mask, dtype=bool)
    if not (values.shape == doses.shape == mask.shape):
        raise ValueError(f"LET {values.shape}, dose {doses.shape} and ROI mask {mask.shape} differ in shape")
    if max_bins < 2:
        raise ValueError(f"max_bins must be at least 2, not {max_bins}")
    d, l = doses[mask].astype(np.float64), values[mask].astype(np.float64)
    if d.size == 0:
        return None
    dose_step, let_step = _nice_step(float(d.max()), max_bins), _nice_step(float(l.max()), max_bins)
    # Bin index of each voxel (a voxel on an edge belongs to the bin above it: ">=" thresholds), then counts of
    # voxels at or above each (dose, LET) edge pair by summing the 2D counts from the top right corner.
    di = np.minimum((d / dose_step + 1e-9).astype(np.int64), max_bins - 1)
    li = np.minimum((l / let_step + 1e-9).astype(np.int64), max_bins - 1)
    nd, nl = int(di.max()) + 1, int(li.max()) + 1
    counts = np.zeros((nd, nl), dtype=np.int64)
    np.add.at(counts, (di, li), 1)
    at_least = counts[::-1, ::-1].cumsum(axis=0).cumsum(axis=1)[::-1, ::-1]
    volume = np.round(100.0 * at_least / d.size, 4)
    return DoseLetHistogram(dose_gy=[round(i * dose_step, 6) for i in range(nd)],
                            let_kev_um=[round(j * let_step, 6) for j in range(nl)],
                            volume_pct=volume.tolist(), voxels=int(d.size))


def _nice_step(top: float, max_bins: int) -> float:
    """The smallest of 1, 2, 5 × 10^k that covers 0..top in at most max_bins bins."""
    if top <= 0:
        return 1.0
    raw = top / (max_bins - 1)
    power = 10.0 ** np.floor(np.log10(raw))
    return float(next(m * power for m in (1, 2, 5, 10) if m * power >= raw))
