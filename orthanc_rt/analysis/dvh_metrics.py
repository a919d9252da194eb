"""Dose-volume metrics of a dose array inside a boolean mask (no contours, no DICOM): plans' QA summaries.

Every voxel counts with the same volume (the arrays share one grid). Two
definitions of D x % exist in Orthanc-RT, named for what they are:

- `dose_at_volume_interpolated` (here, the plans' QA): the (100 - x)th
  percentile of the voxel doses, linearly interpolated between voxels
  (numpy's default); smooth in x, what optimisers and plan comparisons want.
- `orthanc_rt.analysis.dvh.dose_at_volume_binned` (the measurement records):
  the least dose of the hottest x % of the volume read off a fine histogram,
  dicompyler-core's definition, so the records agree with that oracle.

They differ by at most the dose step between two neighbouring voxels. V d
(`volume_at_dose`, the percentage of the volume receiving at least d Gy) has
one definition, used by both.
"""
from __future__ import annotations

import numpy as np

DOSE_LEVELS_PCT = (98, 95, 50, 5, 2)


def dose_at_volume_interpolated(doses: np.ndarray, volume_pct: float) -> float:
    """D{volume_pct}: the dose (Gy) that `volume_pct` % of the voxels receive or exceed."""
    if not 0.0 <= volume_pct <= 100.0:
        raise ValueError(f"volume must be 0-100 %, not {volume_pct}")
    return float(np.percentile(doses, 100.0 - volume_pct)) if doses.size else float("nan")


def volume_at_dose(doses: np.ndarray, dose_gy: float) -> float:
    """V{dose_gy}: percentage of the voxels receiving at least `dose_gy`."""
    return float(100.0 * np.count_nonzero(doses >= dose_gy) / doses.size) if doses.size else float("nan")


def roi_dose_metrics(dose_gy: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Dmin, Dmean, Dmax and D98/D95/D50/D5/D2 (Gy) of the dose inside `mask`, plus its voxel count."""
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != dose_gy.shape:
        raise ValueError(f"mask shape {mask.shape} differs from the dose shape {dose_gy.shape}")
    doses = np.asarray(dose_gy, dtype=np.float64)[mask]
    if not doses.size:
        return {"voxels": 0}
    metrics: dict[str, float] = {"voxels": int(doses.size), "Dmin": float(doses.min()),
                                 "Dmean": float(doses.mean()), "Dmax": float(doses.max())}
    for level in DOSE_LEVELS_PCT:
        metrics[f"D{level}"] = dose_at_volume_interpolated(doses, level)
    return metrics


def target_dose_metrics(dose_gy: np.ndarray, target: np.ndarray, prescription_gy: float,
                        body: np.ndarray | None = None) -> dict[str, float]:
    """`roi_dose_metrics` of the target plus coverage, homogeneity and conformity.

    - V95%: % of the target receiving >= 95 % of the prescription.
    - HI = (D2 - D98) / D50 (ICRU 83).
    - CI_RTOG = V95%_body / V_target: volume of `body` (default: the whole
      grid) receiving >= 95 % of the prescription over the target volume
      (1 is ideal, above 1 spills outside the target).
    - CI_Paddick = TV_95² / (TV x V95%_body), TV_95 the target volume
      receiving >= 95 % (1 is ideal, in 0..1).
    """
    target = np.asarray(target, dtype=bool)
    metrics = roi_dose_metrics(dose_gy, target)
    if not metrics["voxels"]:
        return metrics
    level = 0.95 * prescription_gy
    covered = np.asarray(dose_gy) >= level
    inside = np.ones_like(target) if body is None else np.asarray(body, dtype=bool)
    tv, tv95, piv = int(target.sum()), int(np.count_nonzero(covered & target)), int(np.count_nonzero(covered & inside))
    metrics["V95%"] = 100.0 * tv95 / tv
    metrics["HI"] = (metrics["D2"] - metrics["D98"]) / metrics["D50"] if metrics["D50"] > 0 else float("nan")
    metrics["CI_RTOG"] = piv / tv
    metrics["CI_Paddick"] = tv95 ** 2 / (tv * piv) if piv else 0.0
    return metrics
