"""Clinical goals of a plan evaluated on its dose (pass/fail for the QA summary), and conflicting objectives.

Goals and their metrics are defined in `orthanc_rt.planning.protocols`; D x % is
`dvh_metrics.dose_at_volume_interpolated`, like the rest of the plans' QA.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from orthanc_rt.analysis.dvh_metrics import dose_at_volume_interpolated, volume_at_dose
from orthanc_rt.planning.protocols import METRIC, Goal


def metric_value(metric: str, doses: np.ndarray) -> float:
    """The value of `metric` for the voxel doses of one ROI (Gy, or % for V<d>Gy)."""
    match = METRIC.match(metric)
    if match is None:
        raise ValueError(f"unknown metric {metric!r}")
    if not doses.size:
        return float("nan")
    if match.group(1) is not None:
        return dose_at_volume_interpolated(doses, float(match.group(1)))
    if match.group(2) is not None:
        return volume_at_dose(doses, float(match.group(2)))
    return float({"Dmax": doses.max, "Dmean": doses.mean, "Dmin": doses.min}[metric]())


def evaluate_goals(goals: tuple[Goal, ...], dose_gy: np.ndarray, masks: Mapping[str, np.ndarray]) -> list[dict]:
    """Each goal with its value on `dose_gy` and `passed` (None when the ROI is missing or empty on the grid)."""
    out = []
    for goal in goals:
        mask = masks.get(goal.roi)
        doses = np.asarray(dose_gy, dtype=np.float64)[np.asarray(mask, dtype=bool)] if mask is not None \
            else np.empty(0)
        value = metric_value(goal.metric, doses)
        passed = None if value != value else bool((goal.min is None or value >= goal.min)
                                                  and (goal.max is None or value <= goal.max))
        out.append({**goal.as_dict(), "unit": goal.unit, "value": None if value != value else round(value, 4),
                    "passed": passed})
    return out


def objective_conflicts(objectives: tuple, masks: Mapping[str, np.ndarray]) -> list[str]:
    """Notes on objectives no dose can meet together: a minimum dose on one ROI above a maximum on an overlapping one.

    Still a valid request (the optimiser weighs them): the QA summary says it instead of failing the plan.
    """
    # DVH objectives bound part of a volume only: an overlap smaller than that part does not make them conflict.
    lows = [o for o in objectives if o.type in ("DMin", "DUniform")]
    highs = [o for o in objectives if o.type in ("DMax", "DUniform")]
    notes = []
    for low in lows:
        for high in highs:
            if low is high or not low.dose_gy > high.dose_gy:
                continue
            overlap = int(np.count_nonzero(np.asarray(masks[low.roi], bool) & np.asarray(masks[high.roi], bool))) \
                if low.roi in masks and high.roi in masks else 0
            if low.roi == high.roi or overlap:
                where = "the same ROI" if low.roi == high.roi else f"{overlap} voxels of overlap"
                notes.append(f"{low.type} {low.dose_gy:g} Gy on {low.roi} and {high.type} {high.dose_gy:g} Gy on "
                             f"{high.roi} conflict ({where}): the optimiser can meet at most one of them there")
    return notes
