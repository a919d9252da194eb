"""A robustness evaluation's numbers: the scenarios' dose envelope, its default goals, DVH bands.

Everything works on doses that share one grid (the scenarios of one plan on
one CT) and boolean ROI masks on that grid. The goals in every scenario and
their worst case are orthanc_rt.analysis.goals.evaluate_goals over the
scenarios' doses.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Mapping, Sequence

import numpy as np

from orthanc_rt.dicom.models import DoseGrid
from orthanc_rt.planning.goals import Goal
from orthanc_rt.scheduling.robustness import DEFAULT_TARGET_COVERAGE_PCT

BAND_POINTS = 101  # dose bins of a DVH band (0 to the largest dose in the ROI over all scenarios)


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
    return tuple(Goal(roi=name, metric="D95", min=DEFAULT_TARGET_COVERAGE_PCT, unit="%") for name in target_names)


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
