"""Dose-averaged LET (LETd) maps: where they mean something, and their per-ROI statistics. Pure numpy.

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
