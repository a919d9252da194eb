"""A robustness evaluation's numbers: the scenarios' dose envelope, clinical goals in every scenario, DVH bands.

Everything works on doses that share one grid (the scenarios of one plan on
one CT) and boolean ROI masks on that grid. Dose-volume values are the
plans' QA definitions (orthanc_rt.analysis.dvh_metrics: Dx interpolated
between voxels, Vd the share of voxels receiving at least d).

The worst case of a goal is its least favourable value over the scenarios:
the minimum for a `>=` goal, the maximum for a `<=` goal; a goal passes
robustly when that worst value meets it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import numpy as np

from orthanc_rt.analysis.dvh_metrics import dose_at_volume_interpolated, volume_at_dose
from orthanc_rt.dicom.models import DoseGrid
from orthanc_rt.errors import DicomInputError
from orthanc_rt.scheduling.robustness import DEFAULT_TARGET_COVERAGE_PCT, Goal

BAND_POINTS = 101  # dose bins of a DVH band (0 to the largest dose in the ROI over all scenarios)


@dataclass(frozen=True)
class GoalResult:
    goal: Goal
    values: list[float]  # per scenario, in the goal's unit
    worst: float
    worst_scenario: int  # index
    reference_gy: float | None  # what "%" of a dose goal is relative to
    reference: str  # "prescription", "nominal" or "" (absolute goals, volume goals)

    @property
    def passed(self) -> bool:
        return self.goal.passes(self.worst)

    def passed_in(self, index: int) -> bool:
        return self.goal.passes(self.values[index])


def dose_envelope(doses: Sequence[DoseGrid]) -> tuple[DoseGrid, DoseGrid]:
    """The voxel-wise minimum and maximum dose over the scenarios (all on one grid)."""
    if not doses:
        raise ValueError("no scenario doses")
    shapes = {grid.dose_gy.shape for grid in doses}
    if len(shapes) != 1:
        raise ValueError(f"scenario doses on different grids: {sorted(shapes)}")
    stack = np.stack([np.asarray(grid.dose_gy, dtype=np.float32) for grid in doses])
    return replace(doses[0], dose_gy=stack.min(axis=0)), replace(doses[0], dose_gy=stack.max(axis=0))


def default_goals(target_names: Sequence[str]) -> tuple[Goal, ...]:
    """Target coverage: D95 >= 95 % (of the prescription, or of the nominal D95) of every target."""
    return tuple(Goal(roi=name, metric="D95", op=">=", value=DEFAULT_TARGET_COVERAGE_PCT, unit="%")
                 for name in target_names)


def metric_gy_or_pct(metric: str, doses: np.ndarray) -> float:
    """A goal's metric of the doses inside an ROI: Gy for dose metrics, % of the ROI for VxGy."""
    if metric == "Dmean":
        return float(doses.mean())
    if metric == "Dmax":
        return float(doses.max())
    if metric == "Dmin":
        return float(doses.min())
    if metric.startswith("V"):
        return volume_at_dose(doses, float(metric[1:-2]))
    return dose_at_volume_interpolated(doses, float(metric[1:]))


def evaluate_goals(goals: Sequence[Goal], doses: Sequence[np.ndarray], masks: Mapping[str, np.ndarray], *,
                   prescription_gy: float | None, nominal: int = 0) -> list[GoalResult]:
    """Every goal in every scenario; DicomInputError names a goal's ROI missing from (or empty in) the masks."""
    results = []
    for goal in goals:
        mask = masks.get(goal.roi)
        if mask is None:
            raise DicomInputError(f"goal {goal.text!r}: no ROI {goal.roi!r} in the structure set (it has: "
                                  f"{', '.join(sorted(masks)) or 'none'})")
        if not np.any(mask):
            raise DicomInputError(f"goal {goal.text!r}: ROI {goal.roi!r} holds no voxel of the dose grid")
        raw = [metric_gy_or_pct(goal.metric, np.asarray(dose)[mask]) for dose in doses]
        reference_gy, reference = None, ""
        if goal.is_dose and goal.unit == "%":
            reference_gy, reference = ((prescription_gy, "prescription") if prescription_gy
                                       else (raw[nominal], "nominal"))
            values = [100.0 * value / reference_gy if reference_gy else float("nan") for value in raw]
        else:
            values = raw
        worst = goal.worst(values)
        results.append(GoalResult(goal=goal, values=values, worst=worst, worst_scenario=values.index(worst),
                                  reference_gy=reference_gy, reference=reference))
    return results


def dvh_bands(doses: Sequence[np.ndarray], masks: Mapping[str, np.ndarray], *, nominal: int = 0,
              points: int = BAND_POINTS) -> dict[str, dict[str, list[float]]]:
    """Per ROI, cumulative DVHs (% of the ROI at >= each dose) on one dose axis: the nominal curve and the
    band of all scenarios (their minimum and maximum at every dose)."""
    bands = {}
    for name, mask in masks.items():
        if not np.any(mask):
            continue
        inside = [np.sort(np.asarray(dose, dtype=np.float64)[mask]) for dose in doses]
        top = max(float(values[-1]) for values in inside)
        axis = np.linspace(0.0, top if top > 0 else 1.0, points)
        curves = np.array([100.0 * (1.0 - np.searchsorted(values, axis, side="left") / values.size)
                           for values in inside])
        bands[name] = {"dose_gy": axis.round(5).tolist(), "nominal": curves[nominal].round(4).tolist(),
                       "min": curves.min(axis=0).round(4).tolist(), "max": curves.max(axis=0).round(4).tolist()}
    return bands
