"""The comparison of two doses: gamma, dose differences, per-ROI metrics and DVHs, a verdict.

`compare` takes two `DoseGrid`s of one frame of reference and the check's
parameters. The evaluated dose (the recompute) is resampled onto the
reference's grid (the TPS dose, the one being checked) by trilinear
interpolation at the reference's voxel centres, zero outside its own grid:
the TPS grid is the one the clinic reviewed, and gamma searches around its
points. ROI masks are made on that grid with the DVH module's rules.

Verdict (AAPM TG-218, Miften et al. 2018): the primary criteria's pass rate
at or above `pass_percent` passes, below `action_percent` fails, in between
warns. The median ratio of the doses where the reference is at least 50 %
of its maximum is reported beside it: a ratio near 1.10 or 0.91 is the
signature of an RBE 1.1 convention mismatch, not of a wrong plan.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy import ndimage

from orthanc_rt.analysis.body import BodyMask, grid_as_volume
from orthanc_rt.analysis.dvh_metrics import roi_dose_metrics
from orthanc_rt.analysis.gamma import GammaCriteria, GammaMap, gamma_3d
from orthanc_rt.analysis.roi_masks import roi_mask
from orthanc_rt.dicom.models import CtVolume, DoseGrid
from orthanc_rt.dicom.rtstruct import StructureSet
from orthanc_rt.errors import DicomInputError
from orthanc_rt.records.checks import FAIL, PASS, WARN
from orthanc_rt.scheduling.params import CheckParams


@dataclass(frozen=True)
class DoseDescription:
    """One of the two doses, as the report and the record name it."""

    label: str  # e.g. "RayStation PLAN dose" or "MCsquare recompute (1e6 primaries)"
    sop_instance_uids: tuple[str, ...]  # several for BEAM doses summed
    summation: str  # how it was made comparable, e.g. "PLAN", "3 BEAM doses summed", "FRACTION x 30"
    dose_type: str  # PHYSICAL or EFFECTIVE as stored
    manufacturer: str = ""
    max_gy: float = float("nan")


@dataclass(frozen=True)
class DvhPair:
    """Cumulative DVHs of one ROI under both doses, on shared dose bins."""

    dose_bins_gy: np.ndarray
    reference_volume_percent: np.ndarray
    evaluated_volume_percent: np.ndarray


@dataclass(frozen=True)
class RoiComparison:
    name: str
    volume_cc: float
    gamma_pass_rate_percent: float | None  # under the primary criteria, points inside the ROI
    metrics: dict[str, tuple[float, float]]  # "D95", "Dmean", ... -> (reference Gy, evaluated Gy)
    dvh: DvhPair | None = None


@dataclass
class DoseComparison:
    reference: DoseDescription
    evaluated: DoseDescription
    gamma: list[GammaMap]  # the primary criteria first
    rois: list[RoiComparison]
    difference: dict[str, float]  # dose-difference statistics (evaluated - reference), % of the reference maximum
    high_dose_ratio: float | None  # median evaluated / reference where the reference is >= HIGH_DOSE_FRACTION of max
    params: CheckParams  # the criteria and limits it was judged with
    verdict: str
    verdict_reason: str
    notes: list[str] = field(default_factory=list)  # assumptions: summation, RBE convention, resampling
    provenance: dict[str, Any] = field(default_factory=dict)  # engine, version, checksums, primaries, who asked
    # For the report's pictures: both doses and the grid.
    reference_gy: np.ndarray | None = None
    evaluated_gy: np.ndarray | None = None
    origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)
    focus_zyx: tuple[int, int, int] | None = None  # where the report's slices cross (the target's centre)
    ct_hu: np.ndarray | None = None  # the CT resampled onto the dose grid, for the slices' background

    @property
    def primary(self) -> GammaMap:
        return self.gamma[0]


# The "high-dose region" of the median ratio: reference >= 50 % of its maximum. Not the top 10 %: there a peak
# that one grid resolves and a coarser one averages (a Bragg peak on 2 mm vs 3 mm voxels) moved the median by
# 17 % in tests/integration/test_dose_check.py, which would hide or fake an RBE mismatch (10 %).
HIGH_DOSE_FRACTION = 0.50
METRICS = ("D98", "D95", "D50", "D2", "Dmean", "Dmax")
# The dose-difference statistics (`DoseComparison.difference`): key -> (what it is, its unit).
DIFFERENCE_STATISTICS = {
    "mean_percent": ("mean difference", "% of the reference maximum"),
    "sd_percent": ("standard deviation", "% of the reference maximum"),
    "p5_percent": ("5th percentile", "% of the reference maximum"),
    "p95_percent": ("95th percentile", "% of the reference maximum"),
    "max_abs_percent": ("largest absolute difference", "% of the reference maximum"),
    "within_3_percent": ("points within 3 % of the reference maximum", "% of the points"),
    "points": ("points compared (reference above the low-dose threshold)", ""),
}
_DVH_BINS = 400


def criteria_of(params: CheckParams) -> list[GammaCriteria]:
    """The primary criteria first, then those reported beside them (same threshold and normalisation)."""
    primary = GammaCriteria(params.dose_percent, params.distance_mm, params.low_dose_threshold_percent,
                            params.local)
    others = [GammaCriteria(dose, mm, params.low_dose_threshold_percent, params.local)
              for dose, mm in params.also_report if (dose, mm) != (params.dose_percent, params.distance_mm)]
    return [primary, *others]


def resample_onto(grid: DoseGrid, target: DoseGrid, *, outside: float = 0.0) -> np.ndarray:
    """`grid`'s dose at `target`'s voxel centres ([z, y, x], trilinear; `outside` beyond `grid`)."""
    nz, ny, nx = target.dose_gy.shape
    axes = [(t_origin + t_spacing * np.arange(n) - origin) / spacing
            for t_origin, t_spacing, n, origin, spacing
            in zip(target.origin_mm, target.spacing_mm, (nx, ny, nz), grid.origin_mm, grid.spacing_mm)]
    if _same_geometry(grid, target):
        return np.asarray(grid.dose_gy, dtype=np.float32)  # the same grid: no interpolation
    zi, yi, xi = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    return ndimage.map_coordinates(np.asarray(grid.dose_gy, dtype=np.float32), [zi, yi, xi], order=1,
                                   mode="constant", cval=outside).astype(np.float32)


def ct_on(ct: CtVolume, grid: DoseGrid) -> np.ndarray:
    """The CT's Hounsfield units at the dose grid's voxel centres (air beyond the CT), for pictures."""
    as_grid = DoseGrid(dose_gy=np.asarray(ct.hu, dtype=np.float32), origin_mm=ct.origin_mm,
                       spacing_mm=ct.spacing_mm, frame_of_reference_uid=ct.frame_of_reference_uid)
    return resample_onto(as_grid, grid, outside=-1000.0)


def roi_masks_on(grid: DoseGrid, structures: StructureSet | None) -> dict[str, np.ndarray]:
    """The masks of the structure set's contoured ROIs on the dose grid (ROIs sharing a name united)."""
    if structures is None:
        return {}
    if structures.frame_of_reference_uid and grid.frame_of_reference_uid \
            and structures.frame_of_reference_uid != grid.frame_of_reference_uid:
        raise DicomInputError(f"the structure set is on FrameOfReferenceUID {structures.frame_of_reference_uid}, "
                              f"the dose on {grid.frame_of_reference_uid}")
    volume = grid_as_volume(grid)
    masks: dict[str, np.ndarray] = {}
    for roi in structures.rois:
        mask = roi_mask(roi, volume)
        if mask.any():
            masks[roi.name] = masks[roi.name] | mask if roi.name in masks else mask
    return masks


def compare(reference: DoseGrid, evaluated: DoseGrid, params: CheckParams, *, reference_label: DoseDescription,
            evaluated_label: DoseDescription, rois: dict[str, np.ndarray] | None = None,
            target: str | None = None, body: BodyMask | None = None, notes: list[str] | None = None,
            provenance: dict[str, Any] | None = None) -> DoseComparison:
    """Compare `evaluated` with `reference` (both Gy, the same frame of reference); `rois` on the reference grid.

    `target` names the ROI the reference must cover (a dose grid that misses
    part of it cannot be checked there: DicomInputError). With `body` (on the
    reference grid) both doses count only inside the patient: Monte Carlo
    noise in air (hundreds of Gy in a near-vacuum voxel) is no dose, and must
    not set the global normalisation.
    """
    if reference.frame_of_reference_uid and evaluated.frame_of_reference_uid \
            and reference.frame_of_reference_uid != evaluated.frame_of_reference_uid:
        raise DicomInputError(f"the doses are on different frames of reference ({reference.frame_of_reference_uid} "
                              f"and {evaluated.frame_of_reference_uid}): they cannot be compared")
    notes = list(notes or [])
    ref = np.asarray(reference.dose_gy, dtype=np.float32)
    ev = resample_onto(evaluated, reference)
    if not _same_geometry(evaluated, reference):
        notes.append("the evaluated dose was resampled onto the reference's grid (trilinear, at its voxel centres)")
    if body is not None:
        outside = float(ref[~body.mask].max()) if np.any(~body.mask) else 0.0
        ref, ev = np.where(body.mask, ref, 0.0).astype(np.float32), np.where(body.mask, ev, 0.0).astype(np.float32)
        notes.append(f"compared inside the patient ({body.source}); the reference's maximum outside it, "
                     f"{outside:.3g} Gy, is not dose")
    else:
        notes.append("no body outline or CT: the doses are compared over the whole grid, air included")
    peak = float(ref.max()) if ref.size else 0.0
    if not peak > 0:
        raise DicomInputError("the reference dose is zero everywhere (in the patient): nothing to compare")
    rois = dict(rois or {})
    if target and target in rois:
        _require_covered(ref, rois[target], target)
    gammas = [gamma_3d(ref, ev, reference.spacing_mm, criteria) for criteria in criteria_of(params)]
    primary = gammas[0]
    evaluated_points = ref >= peak * params.low_dose_threshold_percent / 100.0
    difference = _difference_stats(ref, ev, evaluated_points, peak)
    high = ref >= HIGH_DOSE_FRACTION * peak
    ratio = float(np.median(ev[high] / ref[high])) if np.any(high) else None
    table = [_roi_row(name, mask, ref, ev, primary, reference.spacing_mm) for name, mask in rois.items()]
    verdict, reason = judge(primary, params, ratio)
    focus_mask = rois.get(target) if target else None
    return DoseComparison(
        reference=replace(reference_label, max_gy=peak), evaluated=replace(evaluated_label, max_gy=float(ev.max())),
        gamma=gammas, rois=table, difference=difference,
        high_dose_ratio=None if ratio is None else round(ratio, 4), params=params, verdict=verdict,
        verdict_reason=reason, notes=notes, provenance=dict(provenance or {}), reference_gy=ref, evaluated_gy=ev,
        origin_mm=reference.origin_mm, spacing_mm=reference.spacing_mm,
        focus_zyx=_focus(focus_mask if focus_mask is not None and focus_mask.any() else high))


def judge(primary: GammaMap, limits: CheckParams, ratio: float | None) -> tuple[str, str]:
    """Pass / warn / fail: the worse of the gamma verdict (TG-218 limits) and the dose-level verdict (the
    high-dose median ratio), with the reasons in words, the deciding one first."""
    rate = primary.pass_rate_percent
    stated = f"gamma {primary.criteria.name} pass rate {rate:.1f} % over {primary.evaluated_points} points"
    if rate >= limits.pass_percent:
        by_gamma = PASS, f"{stated} (>= {limits.pass_percent:g} %)"
    elif rate < limits.action_percent:
        by_gamma = FAIL, f"{stated} (below the action limit {limits.action_percent:g} %)"
    else:
        by_gamma = WARN, (f"{stated} (below {limits.pass_percent:g} %, at or above the action limit "
                          f"{limits.action_percent:g} %)")
    if ratio is None:
        return by_gamma
    off = round(abs(ratio - 1.0) * 100.0, 6)  # 1.02 is 2 % off, not 2.0000000000000018
    level = f"median dose ratio in the high-dose region {ratio:.3f} ({off:.1f} % off"
    if off > limits.dose_level_action_percent:
        by_level = FAIL, f"{level}, above the action limit {limits.dose_level_action_percent:g} %)"
    elif off > limits.dose_level_warn_percent:
        by_level = WARN, f"{level}, above {limits.dose_level_warn_percent:g} %)"
    else:
        by_level = PASS, f"{level}, within {limits.dose_level_warn_percent:g} %)"
    if abs(ratio - 1.1) < 0.03 or abs(ratio - 1 / 1.1) < 0.03:
        by_level = by_level[0], by_level[1] + ": an RBE 1.1 convention mismatch?"
    order = (PASS, WARN, FAIL)
    first, second = sorted((by_gamma, by_level), key=lambda v: -order.index(v[0]))
    return first[0], f"{first[1]}; {second[1]}"


def _same_geometry(a: DoseGrid, b: DoseGrid) -> bool:
    return a.dose_gy.shape == b.dose_gy.shape and np.allclose(a.origin_mm, b.origin_mm, atol=1e-3) \
        and np.allclose(a.spacing_mm, b.spacing_mm, atol=1e-4)


def _require_covered(ref: np.ndarray, mask: np.ndarray, name: str) -> None:
    """The reference grid must hold dose over the target: a grid cut through it cannot be checked."""
    edges = np.zeros_like(mask)
    edges[[0, -1], :, :] = edges[:, [0, -1], :] = edges[:, :, [0, -1]] = True
    touching = np.count_nonzero(mask & edges)
    low = np.count_nonzero(mask & (ref < 0.05 * ref.max()))
    if touching or low > 0.05 * np.count_nonzero(mask):
        raise DicomInputError(f"the reference dose grid does not cover the target {name}: "
                              f"{touching} of its voxels lie on the grid's edge and {low} receive almost no dose")


def _difference_stats(ref: np.ndarray, ev: np.ndarray, where: np.ndarray, peak: float) -> dict[str, float]:
    """Evaluated - reference over the points above the threshold, in % of the reference maximum."""
    diff = (ev[where] - ref[where]) / peak * 100.0
    if not diff.size:
        return {}
    return {"mean_percent": round(float(diff.mean()), 3), "sd_percent": round(float(diff.std()), 3),
            "p5_percent": round(float(np.percentile(diff, 5)), 3),
            "p95_percent": round(float(np.percentile(diff, 95)), 3),
            "max_abs_percent": round(float(np.abs(diff).max()), 3),
            "within_3_percent": round(float(100.0 * np.count_nonzero(np.abs(diff) <= 3.0) / diff.size), 2),
            "points": int(diff.size)}


def _roi_row(name: str, mask: np.ndarray, ref: np.ndarray, ev: np.ndarray, primary: GammaMap,
             spacing_mm: tuple[float, float, float]) -> RoiComparison:
    reference, evaluated = roi_dose_metrics(ref, mask), roi_dose_metrics(ev, mask)
    metrics = {key: (round(reference[key], 4), round(evaluated[key], 4)) for key in METRICS if key in reference}
    top = max(float(ref[mask].max()), float(ev[mask].max()), 1e-6)
    bins = np.linspace(0.0, top * 1.02, _DVH_BINS)
    return RoiComparison(name=name, volume_cc=round(float(mask.sum()) * float(np.prod(spacing_mm)) / 1000.0, 3),
                         gamma_pass_rate_percent=primary.pass_rate_in(mask), metrics=metrics,
                         dvh=DvhPair(bins, _cumulative(ref[mask], bins), _cumulative(ev[mask], bins)))


def _cumulative(doses: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """% of the voxels receiving at least each bin's dose."""
    ordered = np.sort(doses)
    return 100.0 * (ordered.size - np.searchsorted(ordered, bins, side="left")) / max(ordered.size, 1)


def _focus(mask: np.ndarray) -> tuple[int, int, int] | None:
    if mask is None or not np.any(mask):
        return None
    return tuple(int(round(v)) for v in ndimage.center_of_mass(mask))  # type: ignore[return-value]
