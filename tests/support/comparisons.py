"""Synthetic `DoseComparison`s for the report tests: a box-shaped target dose in a water cylinder.

The gamma map is made here directly (dose difference over the dose criterion,
NaN below the threshold): a stand-in with the right shape and range, not a
gamma index; gamma_3d is tested on its own. DVHs and metrics are plain numpy.
"""
from __future__ import annotations

import numpy as np

from orthanc_rt.analysis.dose_comparison import (
    FAIL,
    PASS,
    DoseComparison,
    DoseDescription,
    DvhPair,
    RoiComparison,
)
from orthanc_rt.analysis.gamma import GammaCriteria, GammaMap
from orthanc_rt.scheduling.params import CheckParams

SHAPE = (36, 56, 64)  # z, y, x
SPACING_MM = (2.5, 2.5, 3.0)  # x, y, z
ORIGIN_MM = (-80.0, -70.0, -54.0)
PRESCRIPTION_GY = 60.0


def _coordinates() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    z, y, x = np.indices(SHAPE, dtype=np.float32)
    return (ORIGIN_MM[0] + x * SPACING_MM[0], ORIGIN_MM[1] + y * SPACING_MM[1], ORIGIN_MM[2] + z * SPACING_MM[2])


def _box_dose(centre: tuple[float, float, float], half_mm: float, scale: float) -> np.ndarray:
    """A plateau of PRESCRIPTION_GY over a cube with error-function-like penumbrae and a low-dose entrance."""
    x, y, z = _coordinates()
    profile = np.ones(SHAPE, dtype=np.float32)
    for axis, c in zip((x, y, z), centre):
        profile *= 1.0 / (1.0 + np.exp((np.abs(axis - c) - half_mm) / 3.0))
    entrance = 0.25 / (1.0 + np.exp((np.abs(y - centre[1]) - half_mm) / 3.0)) \
        * 1.0 / (1.0 + np.exp((np.abs(z - centre[2]) - half_mm) / 3.0)) * (x < centre[0])
    return (scale * PRESCRIPTION_GY * np.maximum(profile, entrance)).astype(np.float32)


def _dvh(dose: np.ndarray, mask: np.ndarray, bins: np.ndarray) -> np.ndarray:
    values = dose[mask]
    return np.array([100.0 * np.count_nonzero(values >= b) / values.size for b in bins])


def _metrics(reference: np.ndarray, evaluated: np.ndarray, mask: np.ndarray) -> dict[str, tuple[float, float]]:
    out = {}
    for name, fn in (("D98", lambda v: np.percentile(v, 2)), ("D95", lambda v: np.percentile(v, 5)),
                     ("Dmean", np.mean), ("D2", lambda v: np.percentile(v, 98))):
        out[name] = (float(fn(reference[mask])), float(fn(evaluated[mask])))
    return out


def synthetic_comparison(*, failing: bool = False, with_ct: bool = True) -> DoseComparison:
    """A pass (evaluated 1 % hotter, with noise) or, `failing`, a fail (evaluated 10 % hotter, i.e. an RBE
    mismatch, and 4 mm off)."""
    reference = _box_dose((0.0, 0.0, 0.0), 26.0, 1.0)
    evaluated = _box_dose((4.0 if failing else 0.0, 0.0, 0.0), 26.0, 1.10 if failing else 1.01)
    # Monte Carlo noise, 0.8 % of the prescription
    evaluated += np.random.default_rng(12).normal(0.0, 0.008 * PRESCRIPTION_GY, SHAPE).astype(np.float32) \
        * (evaluated > 0.05 * PRESCRIPTION_GY)
    maximum = float(reference.max())
    criteria = GammaCriteria()
    threshold = criteria.low_dose_threshold_percent / 100.0 * maximum
    stand_in = np.abs(evaluated - reference) / (criteria.dose_percent / 100.0 * maximum)
    gamma = np.where(reference >= threshold, np.minimum(stand_in, 2.0), np.nan).astype(np.float32)
    evaluated_points = int(np.count_nonzero(~np.isnan(gamma)))
    pass_rate = 100.0 * np.count_nonzero(gamma <= 1.0) / evaluated_points
    loose = GammaCriteria(dose_percent=3.0, distance_mm=3.0)
    loose_gamma = np.where(np.isnan(gamma), np.nan, gamma * 0.8).astype(np.float32)
    maps = [GammaMap(criteria, gamma, evaluated_points, pass_rate),
            GammaMap(loose, loose_gamma, evaluated_points,
                     100.0 * np.count_nonzero(loose_gamma <= 1.0) / evaluated_points)]

    x, y, z = _coordinates()
    masks = {"PTV": (np.abs(x) <= 20) & (np.abs(y) <= 20) & (np.abs(z) <= 20),
             "Spinal cord": (np.hypot(x - 0.0, y - 40.0) <= 6.0),
             "Body": np.hypot(x, y) <= 68.0}
    bins = np.linspace(0.0, 1.15 * maximum * (1.10 if failing else 1.01), 120)
    rois = [RoiComparison(name, float(mask.sum() * np.prod(SPACING_MM) / 1000.0), maps[0].pass_rate_in(mask),
                          _metrics(reference, evaluated, mask),
                          DvhPair(bins, _dvh(reference, mask, bins), _dvh(evaluated, mask, bins)))
            for name, mask in masks.items()]
    ct = np.where(np.hypot(x, y) <= 68.0, 20.0, -1000.0).astype(np.float32)
    ct[(np.abs(x) <= 10) & (np.abs(y - 52.0) <= 8)] = 700.0  # a vertebra behind the cord

    limits = CheckParams()  # the defaults: TG-218 limits
    verdict = FAIL if failing else PASS
    reason = (f"gamma {criteria.name} pass rate {pass_rate:.1f} % is below the action limit "
              f"{limits.action_percent:g} %") if failing else \
        f"gamma {criteria.name} pass rate {pass_rate:.1f} % is at or above {limits.pass_percent:g} %"
    difference = 100.0 * (evaluated - reference)[reference >= threshold] / maximum
    return DoseComparison(
        reference=DoseDescription("TPS PLAN dose (synthetic)", ("1.2.826.0.1.3680043.10.1.1",), "PLAN",
                                  "PHYSICAL", "SyntheticTPS", maximum),
        evaluated=DoseDescription("MCsquare recompute (1e6 primaries)", ("1.2.826.0.1.3680043.10.1.2",), "PLAN",
                                  "PHYSICAL", "Orthanc-RT", float(evaluated.max())),
        gamma=maps, rois=rois,
        difference={"mean": float(difference.mean()), "std": float(difference.std()),
                    "p1": float(np.percentile(difference, 1)), "p99": float(np.percentile(difference, 99))},
        high_dose_ratio=float(np.median((evaluated / np.maximum(reference, 1e-6))[reference >= 0.9 * maximum])),
        params=limits, verdict=verdict, verdict_reason=reason,
        notes=["Reference dose: DoseSummationType PLAN, used as is.",
               "RBE: both doses physical; no factor applied.",
               "Evaluated dose resampled trilinearly onto the reference grid."],
        provenance={"patient_id": "SYN-001", "patient_name": "Synthetic^Phantom", "plan_label": "PROTON 1",
                    "plan_sop_instance_uid": "1.2.826.0.1.3680043.10.1.3", "prescription_gy": PRESCRIPTION_GY,
                    "engine": "MCsquare", "engine_version": "1.1", "primaries": 1_000_000,
                    "statistical_uncertainty_percent": 1.2,
                    "checksums": {"reference_sha256": "a" * 64, "ct_sha256": "b" * 64}},
        reference_gy=reference, evaluated_gy=evaluated, origin_mm=ORIGIN_MM, spacing_mm=SPACING_MM,
        focus_zyx=None, ct_hu=ct if with_ct else None)


def bare_comparison() -> DoseComparison:
    """A comparison with nothing but numbers: no ROIs, no arrays, no provenance."""
    full = synthetic_comparison()
    return DoseComparison(reference=full.reference, evaluated=full.evaluated, gamma=full.gamma[:1], rois=[],
                          difference={}, high_dose_ratio=None, params=full.params, verdict=full.verdict,
                          verdict_reason=full.verdict_reason)
