"""3D gamma index (Low et al. 1998, Med. Phys. 25:656) of an evaluated dose against a reference dose.

Both doses are on one grid ([z, y, x] arrays, spacing (x, y, z) mm); the
caller resamples first. Criteria follow AAPM TG-218 (Miften et al. 2018,
Med. Phys. 45:e53): global normalisation to the reference maximum by default,
a low-dose threshold in % of that maximum.

What `gamma_3d` computes, exactly
---------------------------------
For every reference voxel x with R(x) >= threshold (and R(x) > 0 for local
gamma), with DTA the distance criterion and dD the dose criterion
(dose_percent of the reference maximum, or of R(x) when local)::

    gamma(x) = min( max_gamma, min over o in S of sqrt( (E(x + o) - R(x))^2 / dD^2 + |o|^2 / DTA^2 ) )

E(x + o) is the trilinear interpolation of the evaluated dose; offsets that
leave the grid are not used. S is a set of offsets on concentric spheres
(shells) of radius k * h, k = 0, 1, ..., h = DTA / interp_fraction (0.2 mm at
2 mm and the default 10), up to DTA * max_gamma: on a shell of radius r, rings
of constant polar angle (the pole on the last array axis, x) are spaced at
most h apart, and on each ring the points are spaced at most h apart
(ceil(pi r / h) + 1 rings; ceil(2 pi rho / h) + 1 points on a ring of radius rho).

That is the search of pymedphys.gamma (Biggs, Jennings et al., the field's
reference implementation; the shells after Wendling et al. 2007, Med. Phys.
34:1647) with global_normalisation = max reference,
lower_percent_dose_cutoff = threshold, interp_fraction and max_gamma as here:
the same shells, the same points, the same trilinear interpolation, the same
cap. pymedphys walks the shells outwards and stops for a point once its gamma
is at most the shell's |o| / DTA; nothing further out can lower it, so its
answer is the minimum over S, which is what this computes. Gamma maps agree
to rounding (float64 here, numba fastmath there); pass rates within 0.1
percentage point are what the oracle tests demand, and on their 24 cases
they are equal (tests/integration/test_gamma_oracle.py). One difference at
the grid's edges: offset components within 1e-9 voxel of a grid plane are
taken as on it (cos(pi / 2) * r is 1e-16 mm, not 0). pymedphys adds them to
coordinates in mm, where they vanish in the rounding, except at a coordinate
of exactly 0: there a point on the grid's first slice would search, or not,
depending on the sign of that 1e-16. The oracle gets centred coordinates.
The evaluated voxels are R >= threshold, as pymedphys' cutoff; the map is
float32, with a gamma just above 1 never rounded down to a passing 1.0.

How it is fast (pure numpy, all points, no sampling)
----------------------------------------------------
The reference points lie on the grid, so an offset's fractional position in a
voxel, hence its 8 trilinear weights, is the same for every point. The
offsets of one shell are grouped by the grid cell they fall in; for a group,
the 8 corner doses of the cell are gathered once per point and multiplied by
the group's 8 x m weight matrix (one BLAS product gives the m interpolated
doses of every point). Shells are walked outwards on the points whose gamma
can still drop (gamma > r / DTA), and a cell is skipped for a point when the
dose range of its 8 corners (which bounds any interpolated value in it) is
already too far from R(x) to beat the point's current gamma. Both prunings
are exact: they never skip an offset that would lower gamma.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# Doses of the padding around the evaluated grid: an interpolation that touches it with a weight > 0 is
# off the grid and can never be the minimum (pymedphys gives such points an infinite dose).
_OFF_GRID = 1e250
# Offsets within this many voxels of a grid plane are on it: cos(pi / 2) * r is 1e-16 mm, not 0, and would
# otherwise take a point on the grid's last slice off the grid (pymedphys, adding it to a coordinate in mm,
# loses it in the rounding).
_SNAP_VOXELS = 1e-9
_FAR = 1e100  # |difference| / tolerance beyond which a value is off the grid (squared, it still fits a float)
# Points x offsets in one matrix product: a few MB, so the product and the reductions stay in cache.
_CHUNK_ELEMENTS = 1 << 18
_CORNERS = np.array(list(itertools.product((0, 1), repeat=3)))  # [8, (z, y, x)]


@dataclass(frozen=True)
class GammaCriteria:
    """Dose difference (%), distance to agreement (mm), low-dose threshold (% of the reference maximum)."""

    dose_percent: float = 3.0
    distance_mm: float = 2.0
    low_dose_threshold_percent: float = 10.0
    local: bool = False  # False: global (TG-218's default), % of the reference maximum

    @property
    def name(self) -> str:
        return f"{self.dose_percent:g}%/{self.distance_mm:g}mm" + (" local" if self.local else "")


@dataclass(frozen=True)
class GammaMap:
    """Gamma at every reference voxel at or above the threshold; NaN elsewhere."""

    criteria: GammaCriteria
    gamma: np.ndarray  # [z, y, x] float32, NaN where not evaluated, capped at max_gamma
    evaluated_points: int
    pass_rate_percent: float  # share of evaluated points with gamma <= 1
    max_gamma: float = 2.0
    interp_fraction: int = 10

    def pass_rate_in(self, mask: np.ndarray) -> float | None:
        """Pass rate (%) over the evaluated points inside `mask`; None when none is."""
        values = self.gamma[np.asarray(mask, dtype=bool) & ~np.isnan(self.gamma)]
        return float(100.0 * np.count_nonzero(values <= 1.0) / values.size) if values.size else None


def gamma_3d(reference: np.ndarray, evaluated: np.ndarray, spacing_mm: tuple[float, float, float],
             criteria: GammaCriteria, *, max_gamma: float = 2.0, interp_fraction: int = 10) -> GammaMap:
    """The gamma map of `evaluated` against `reference` (same grid, Gy); see the module docstring."""
    ref, ev, spacing_zyx = _checked(reference, evaluated, spacing_mm, criteria, max_gamma, interp_fraction)
    ref_max = float(ref.max())
    evaluated_mask = ref >= criteria.low_dose_threshold_percent / 100.0 * ref_max
    if criteria.local:
        evaluated_mask &= ref > 0  # no local criterion at zero dose
    gamma = np.full(ref.shape, np.nan, dtype=np.float32)
    n_points = int(np.count_nonzero(evaluated_mask))
    if n_points:
        ref_points = ref[evaluated_mask]
        dose_tolerance = criteria.dose_percent / 100.0 * (ref_points if criteria.local else ref_max)
        gamma2 = _search(ref_points, 1.0 / dose_tolerance, evaluated_mask, ev, spacing_zyx,
                         criteria.distance_mm, max_gamma, interp_fraction)
        values = np.sqrt(gamma2).astype(np.float32)
        # A gamma a hair above 1 must not round to a passing 1.0 in float32 (pymedphys decides in float64).
        values[(gamma2 > 1.0) & (values <= 1.0)] = np.nextafter(np.float32(1.0), np.float32(2.0))
        gamma[evaluated_mask] = values
    passed = int(np.count_nonzero(gamma <= 1.0))
    return GammaMap(criteria=criteria, gamma=gamma, evaluated_points=n_points,
                    pass_rate_percent=100.0 * passed / n_points if n_points else float("nan"),
                    max_gamma=max_gamma, interp_fraction=interp_fraction)


def _checked(reference, evaluated, spacing_mm, criteria: GammaCriteria, max_gamma: float, interp_fraction: int):
    ref = np.asarray(reference, dtype=np.float64)
    ev = np.asarray(evaluated, dtype=np.float64)
    if ref.ndim != 3:
        raise ValueError(f"gamma_3d: the reference dose must be a 3D [z, y, x] array, got shape {ref.shape}")
    if ev.shape != ref.shape:
        raise ValueError(f"gamma_3d: the evaluated dose has shape {ev.shape}, the reference {ref.shape}; "
                         "resample both onto one grid first")
    if len(spacing_mm) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing_mm):
        raise ValueError(f"gamma_3d: spacing_mm must be three positive (x, y, z) mm, got {spacing_mm}")
    if not (np.isfinite(criteria.dose_percent) and criteria.dose_percent > 0):
        raise ValueError(f"gamma_3d: the dose criterion must be > 0 %, got {criteria.dose_percent}")
    if not (np.isfinite(criteria.distance_mm) and criteria.distance_mm > 0):
        raise ValueError(f"gamma_3d: the distance criterion must be > 0 mm, got {criteria.distance_mm}")
    if not 0 <= criteria.low_dose_threshold_percent < 100:
        raise ValueError("gamma_3d: the low-dose threshold must be in [0, 100) % of the reference maximum, "
                         f"got {criteria.low_dose_threshold_percent}")
    if not (np.isfinite(max_gamma) and max_gamma > 0):
        raise ValueError(f"gamma_3d: max_gamma must be finite and > 0, got {max_gamma}")
    if int(interp_fraction) != interp_fraction or interp_fraction < 1:
        raise ValueError(f"gamma_3d: interp_fraction must be a positive integer, got {interp_fraction}")
    if not (np.isfinite(ref).all() and np.isfinite(ev).all()):
        raise ValueError("gamma_3d: the doses contain NaN or infinite values")
    if ref.size == 0 or ref.max() <= 0:
        raise ValueError("gamma_3d: the reference dose has no positive value to normalise to")
    sx, sy, sz = (float(s) for s in spacing_mm)
    return ref, ev, (sz, sy, sx)


def _search(ref_points: np.ndarray, inv_tolerance: np.ndarray | float, mask: np.ndarray, ev: np.ndarray,
            spacing_zyx: tuple[float, float, float], dta: float, max_gamma: float, interp_fraction: int) -> np.ndarray:
    """Squared gamma of each point of `mask` (minimum over the shells, capped at max_gamma squared)."""
    shells = _shells(spacing_zyx, dta, max_gamma, interp_fraction)
    reach = max(abs(c) for _, groups in shells for cell, _ in groups for c in cell) + 1 if shells else 1
    # Only the box around the points (plus the search reach) is read; beyond the grid's own edges it is padded.
    where = np.nonzero(mask)
    low = [max(int(w.min()) - reach, 0) for w in where]
    high = [min(int(w.max()) + reach + 1, n) for w, n in zip(where, ev.shape)]
    padded = np.pad(ev[low[0]:high[0], low[1]:high[1], low[2]:high[2]], reach, constant_values=_OFF_GRID)
    strides = np.array([padded.shape[1] * padded.shape[2], padded.shape[2], 1])
    corner_steps = _CORNERS @ strides
    # 2 x 2 x 2 block bounds of the evaluated dose: the range of any value interpolated in a cell.
    block_lo, block_hi = padded.copy(), padded.copy()
    for axis in range(3):
        for block, fn in ((block_lo, np.minimum), (block_hi, np.maximum)):
            moved = np.moveaxis(block, axis, 0)
            fn(moved[:-1], moved[1:], out=moved[:-1])
    position = np.ravel_multi_index(tuple(w - lo + reach for w, lo in zip(where, low)), padded.shape)
    padded, block_lo, block_hi = padded.ravel(), block_lo.ravel(), block_hi.ravel()
    local = np.ndim(inv_tolerance) > 0
    gamma2 = np.minimum(((padded[position] - ref_points) * inv_tolerance) ** 2, max_gamma ** 2)
    active = np.arange(ref_points.size)
    for radius, groups in shells:
        distance2 = (radius / dta) ** 2
        active = active[gamma2[active] > distance2]  # a shell this far cannot lower gamma any more
        if not active.size:
            break
        for cell, weights in groups:
            base = position[active] + int(np.dot(cell, strides))
            r = ref_points[active]
            gap = np.maximum(np.maximum(block_lo[base] - r, r - block_hi[base]), 0.0)
            gap *= inv_tolerance[active] if local else inv_tolerance
            np.minimum(gap, _FAR, out=gap)
            keep = gap * gap < gamma2[active] - distance2
            _lower(gamma2, active[keep], base[keep], padded, corner_steps, weights, ref_points, inv_tolerance,
                   distance2)
    return gamma2


def _lower(gamma2: np.ndarray, points: np.ndarray, base: np.ndarray, padded: np.ndarray, corner_steps: np.ndarray,
           weights: np.ndarray, ref_points: np.ndarray, inv_tolerance, distance2: float) -> None:
    """gamma2[points] lowered by the offsets of one cell of one shell (all at the same distance)."""
    step = max(1, _CHUNK_ELEMENTS // weights.shape[1])
    for start in range(0, points.size, step):
        idx = points[start:start + step]
        # Weights sum to 1, so (corners - R) @ weights = interpolated - R.
        corners = padded[base[start:start + step, None] + corner_steps[None, :]] - ref_points[idx, None]
        diff = corners @ weights
        np.abs(diff, out=diff)
        smallest = diff.min(axis=1)
        smallest *= inv_tolerance[idx] if np.ndim(inv_tolerance) else inv_tolerance
        np.minimum(smallest, _FAR, out=smallest)
        gamma2[idx] = np.minimum(gamma2[idx], smallest * smallest + distance2)


@lru_cache(maxsize=16)
def _shells(spacing_zyx: tuple[float, float, float], dta: float, max_gamma: float,
            interp_fraction: int) -> tuple[tuple[float, tuple[tuple[tuple[int, int, int], np.ndarray], ...]], ...]:
    """Per shell radius (> 0) below DTA * max_gamma: its offsets grouped by grid cell, as 8 x m trilinear weights."""
    step = dta / interp_fraction
    spacing = np.asarray(spacing_zyx)
    out = []
    k = 1
    while k * step < dta * max_gamma * (1 - 1e-12):  # gamma on the last shell is already >= max_gamma
        radius = k * step
        voxels = _sphere_points(radius, step) / spacing
        nearest = np.round(voxels)
        voxels = np.where(np.abs(voxels - nearest) < _SNAP_VOXELS, nearest, voxels)
        cells = np.floor(voxels).astype(np.int64)
        frac = voxels - cells
        # weight of corner b = prod over axes of (frac if b else 1 - frac)
        weights = np.prod(np.where(_CORNERS[:, None, :] == 1, frac[None], 1.0 - frac[None]), axis=2)
        unique, inverse = np.unique(cells, axis=0, return_inverse=True)
        inverse = inverse.ravel()
        groups = tuple((tuple(int(c) for c in cell), np.ascontiguousarray(weights[:, inverse == i]))
                       for i, cell in enumerate(unique))
        out.append((radius, groups))
        k += 1
    return tuple(out)


def _sphere_points(radius: float, step: float) -> np.ndarray:
    """Points on a sphere no more than `step` apart along rings of constant polar angle ([n, (axis0, 1, 2)] mm)."""
    polar = np.linspace(0.0, np.pi, int(np.ceil(np.pi * radius / step)) + 1)
    per_ring = np.ceil(2 * np.pi * radius * np.sin(polar) / step).astype(int) + 1
    ring = np.repeat(np.arange(polar.size), per_ring)
    within = np.arange(ring.size) - np.repeat(np.cumsum(per_ring) - per_ring, per_ring)
    azimuth = within * (2 * np.pi / per_ring[ring])
    theta = polar[ring]
    return radius * np.column_stack((np.sin(theta) * np.cos(azimuth), np.sin(theta) * np.sin(azimuth),
                                     np.cos(theta)))
