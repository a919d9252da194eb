"""The comparison of two doses on one grid: gamma, dose differences, per-ROI metrics, a verdict.

INTERFACE ONLY on this commit (issue #12): the model that the check job
fills and the report renders. Doses are [z, y, x] Gy arrays on one grid
(the evaluated dose resampled onto the reference's grid first).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orthanc_rt.analysis.gamma import GammaMap

PASS, WARN, FAIL = "pass", "warn", "fail"
VERDICTS = (PASS, WARN, FAIL)


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


@dataclass(frozen=True)
class VerdictLimits:
    """TG-218: pass at or above `pass_percent`, action below `action_percent`; in between a warning."""

    pass_percent: float = 95.0
    action_percent: float = 90.0


@dataclass
class DoseComparison:
    reference: DoseDescription
    evaluated: DoseDescription
    gamma: list[GammaMap]  # the primary criteria first
    rois: list[RoiComparison]
    difference: dict[str, float]  # dose-difference statistics (evaluated - reference), % of the reference maximum
    high_dose_ratio: float | None  # median evaluated / reference where the reference is >= 90 % of its maximum
    limits: VerdictLimits
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
