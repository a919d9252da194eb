"""Clinical goals (orthanc_rt.planning.goals) evaluated on one dose (a plan's QA summary) or on many (the scenarios
of a robustness evaluation).

Metrics are the plans' QA definitions (orthanc_rt.analysis.dvh_metrics: D x % interpolated between voxels, V d Gy
the share of voxels receiving at least d). Over scenarios, a goal's worst case is the value with the smallest
margin to its limits; it passes robustly when that value meets them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from orthanc_rt.analysis.dvh_metrics import dose_at_volume_interpolated, volume_at_dose
from orthanc_rt.errors import DicomInputError
from orthanc_rt.planning.goals import METRIC, Goal


def metric_value(metric: str, doses: np.ndarray) -> float:
    """The value of `metric` for the voxel doses of one ROI (Gy, or % for V<d>Gy); NaN for no voxel."""
    match = METRIC.match(metric)
    if match is None:
        raise ValueError(f"unknown metric {metric!r}")
    doses = np.asarray(doses, dtype=np.float64)
    if not doses.size:
        return math.nan
    if match.group(1) is not None:
        return dose_at_volume_interpolated(doses, float(match.group(1)))
    if match.group(2) is not None:
        return volume_at_dose(doses, float(match.group(2)))
    return float({"Dmax": doses.max, "Dmean": doses.mean, "Dmin": doses.min}[metric]())


@dataclass(frozen=True)
class GoalResult:
    goal: Goal
    values: list[float]  # per dose (scenario), in the goal's unit
    reference_gy: float | None = None  # what "%" of a dose goal is relative to
    reference: str = ""  # "prescription", "nominal" or "" (goals in Gy, volume goals)
    worst_scenario: int = field(init=False)

    def __post_init__(self) -> None:
        known = [k for k, v in enumerate(self.values) if v == v]
        worst = min(known, key=lambda k: self.goal.margin(self.values[k])) if known else 0
        object.__setattr__(self, "worst_scenario", worst)

    @property
    def worst(self) -> float:
        return self.values[self.worst_scenario]

    @property
    def passed(self) -> bool | None:
        return self.goal.passes(self.worst)

    def passed_in(self, index: int) -> bool | None:
        return self.goal.passes(self.values[index])

    def summary(self) -> dict[str, Any]:
        """The goal with its (worst) value and pass/fail, as the QA summary lists it."""
        return {**self.goal.as_dict(), "value": None if self.worst != self.worst else round(self.worst, 4),
                "passed": self.passed,
                **({"reference_gy": round(self.reference_gy, 4)} if self.reference_gy is not None else {})}


def evaluate_goals(goals: Sequence[Goal], doses: Sequence[np.ndarray], masks: Mapping[str, np.ndarray], *,
                   prescription_gy: float | None, nominal: int = 0, require_rois: bool = True) -> list[GoalResult]:
    """Every goal on every dose (all on the masks' grid).

    A goal's ROI missing from the masks or holding no voxel is a DicomInputError naming it, or with
    `require_rois=False` (a plan's QA, whose ROIs were checked before planning) a NaN value and `passed` None.
    """
    results = []
    for goal in goals:
        mask = masks.get(goal.roi)
        if require_rois and (mask is None or not np.any(mask)):
            raise DicomInputError(
                f"goal {goal.text!r}: no ROI {goal.roi!r} in the structure set (it has: "
                f"{', '.join(sorted(masks)) or 'none'})" if mask is None
                else f"goal {goal.text!r}: ROI {goal.roi!r} holds no voxel of the dose grid")
        inside = np.asarray(mask, dtype=bool) if mask is not None else None
        raw = [metric_value(goal.metric, np.asarray(dose)[inside] if inside is not None else np.empty(0))
               for dose in doses]
        reference_gy, reference = None, ""
        if goal.relative:
            reference_gy, reference = ((prescription_gy, "prescription") if prescription_gy
                                       else (raw[nominal], "nominal"))
            values = [100.0 * value / reference_gy if reference_gy else math.nan for value in raw]
        else:
            values = raw
        results.append(GoalResult(goal, values, reference_gy, reference))
    return results
