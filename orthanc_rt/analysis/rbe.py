"""RBE-weighted dose of a proton plan from its physical dose and LETd: closed-form, pure numpy.

Every model here is a linear-quadratic (LQ) model of the proton cell survival relative to photons with
tissue parameter (α/β)x, written as RBEmax (the RBE as dose → 0) and RBEmin (as dose → ∞). With the
physical dose per fraction d (Gy), the RBE solves αx·RBE·d + βx·(RBE·d)² = αp·d + βp·d², i.e.

    RBE(d, LETd, α/β) = [sqrt((α/β)² + 4·d·(α/β)·RBEmax + 4·d²·RBEmin²) − α/β] / (2·d)

(McNamara et al. 2015, eq. 5; Wedenberg et al. 2013 use the same LQ form), tending to RBEmax as d → 0.

Models and their published parameters (checked against the overview table of Rørvik/Paganetti et al.,
Br J Radiol 2020;93:20190334, doi:10.1259/bjr.20190334, Table 1):

- "constant": RBE = 1.1 everywhere (ICRU Report 78, 2007; the clinical convention).
- "mcnamara": McNamara AL, Schuemann J, Paganetti H. A phenomenological relative biological effectiveness
  (RBE) model for proton therapy based on all published in vitro cell survival data. Phys Med Biol
  2015;60:8399–8416. RBEmax = 0.99064 + 0.35605/(α/β)·LETd, RBEmin = 1.1012 − 0.0038703·sqrt(α/β)·LETd
  (fitted to 285 data points, LETd up to about 20 keV/µm, α/β 1–30 Gy).
- "wedenberg": Wedenberg M, Lind BK, Hårdemark B. A model for the relative biological effectiveness of
  protons: the tissue specific parameter α/β of photons is a predictor for the sensitivity to LET changes.
  Acta Oncol 2013;52:580–588. RBEmax = 1 + 0.434·LETd/(α/β), RBEmin = 1 (V79-dominated data).

LETd is in keV/µm, α/β in Gy. The dose passed in is the plan dose (all fractions); the RBE is evaluated at
the dose per fraction, which is what the LQ fits describe.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np

from orthanc_rt.dicom.models import DoseGrid, LetGrid
from orthanc_rt.scheduling.params import ALPHA_BETA_RANGE_GY, DEFAULT_ALPHA_BETA_GY, PROTON_RBE, RBE_MODELS

MODELS = RBE_MODELS
CONSTANT_RBE = PROTON_RBE  # 1.1, ICRU Report 78

_MCNAMARA = (0.99064, 0.35605, 1.1012, -0.0038703)  # p0, p1, p2, p3
_WEDENBERG_Q = 0.434  # (keV/µm)^-1 Gy


def rbe_max_min(model: str, let_kev_um: np.ndarray, alpha_beta_gy: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """RBEmax and RBEmin of `model` at each LETd (keV/µm) and α/β (Gy)."""
    let = np.asarray(let_kev_um, dtype=np.float64)
    ab = np.broadcast_to(np.asarray(alpha_beta_gy, dtype=np.float64), let.shape)
    _check(model, let, ab)
    if model == "mcnamara":
        p0, p1, p2, p3 = _MCNAMARA
        return p0 + p1 / ab * let, p2 + p3 * np.sqrt(ab) * let
    if model == "wedenberg":
        return 1.0 + _WEDENBERG_Q * let / ab, np.ones_like(let)
    constant = np.full(let.shape, CONSTANT_RBE)
    return constant, constant


def rbe(model: str, dose_per_fraction_gy: np.ndarray | float, let_kev_um: np.ndarray | float,
        alpha_beta_gy: np.ndarray | float = DEFAULT_ALPHA_BETA_GY) -> np.ndarray:
    """The RBE at physical dose per fraction d (Gy), LETd (keV/µm) and (α/β)x (Gy); RBEmax where d = 0."""
    d = np.asarray(dose_per_fraction_gy, dtype=np.float64)
    let = np.asarray(let_kev_um, dtype=np.float64)
    d, let = np.broadcast_arrays(d, let)
    if np.any(~np.isfinite(d)) or np.any(d < 0):
        raise ValueError("dose per fraction must be finite and not negative")
    rbe_max, rbe_min = rbe_max_min(model, let, alpha_beta_gy)
    if model == "constant":
        return rbe_max
    ab = np.broadcast_to(np.asarray(alpha_beta_gy, dtype=np.float64), d.shape)
    positive = d > 0
    safe_d = np.where(positive, d, 1.0)
    lq = (np.sqrt(ab ** 2 + 4.0 * safe_d * ab * rbe_max + 4.0 * safe_d ** 2 * rbe_min ** 2) - ab) / (2.0 * safe_d)
    return np.where(positive, lq, rbe_max)


def rbe_weighted_dose(dose: DoseGrid, let: LetGrid, *, model: str, fractions: int,
                      alpha_beta_gy: np.ndarray | float = DEFAULT_ALPHA_BETA_GY) -> DoseGrid:
    """The RBE-weighted plan dose (Gy(RBE), DoseType EFFECTIVE) of the physical plan dose `dose`.

    `let` must be on the dose grid (0 below its threshold: there the RBE is that of LETd 0; the dose there is
    below 1 % of the maximum). `alpha_beta_gy` is one
    value or a [z, y, x] map (alpha_beta_map).
    """
    if fractions < 1:
        raise ValueError(f"fractions must be at least 1, not {fractions}")
    physical = np.asarray(dose.dose_gy, dtype=np.float64)
    values = np.asarray(let.let_kev_um, dtype=np.float64)
    if physical.shape != values.shape:
        raise ValueError(f"dose grid {physical.shape} and LET grid {values.shape} differ")
    factor = rbe(model, physical / fractions, values, alpha_beta_gy)
    return replace(dose, dose_gy=(physical * factor).astype(np.float32), dose_type="EFFECTIVE")


def alpha_beta_map(shape_zyx: Sequence[int], default_gy: float,
                   rois: Sequence[tuple[np.ndarray, float]] = ()) -> np.ndarray:
    """(α/β) per voxel: `default_gy`, and each ROI's value inside its mask; where ROIs overlap the smallest
    α/β wins (the larger RBE: the cautious choice for the organ at risk)."""
    result = np.full(tuple(shape_zyx), float(default_gy), dtype=np.float64)
    _check_alpha_beta(np.asarray(default_gy, dtype=np.float64), "default α/β")
    assigned = np.full(tuple(shape_zyx), np.inf)
    for mask, value in rois:
        _check_alpha_beta(np.asarray(value, dtype=np.float64), "ROI α/β")
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != result.shape:
            raise ValueError(f"ROI mask {mask.shape} is not on the grid {result.shape}")
        assigned = np.where(mask, np.minimum(assigned, value), assigned)
    return np.where(np.isfinite(assigned), assigned, result)


def describe(model: str, alpha_beta_gy: float, per_roi: bool = False) -> str:
    """What an RBE-weighted dose is, for its SeriesDescription/DoseComment (at most 64 characters)."""
    if model == "constant":
        return f"RBE-weighted dose, constant RBE {CONSTANT_RBE}"
    name = {"mcnamara": "McNamara 2015", "wedenberg": "Wedenberg 2013"}[model]
    return f"RBE-weighted dose, {name}, a/b {alpha_beta_gy:g} Gy" + (" (ROI a/b)" if per_roi else "")


def _check(model: str, let: np.ndarray, ab: np.ndarray) -> None:
    if model not in MODELS:
        raise ValueError(f"unknown RBE model {model!r}; expected one of {', '.join(MODELS)}")
    if np.any(~np.isfinite(let)) or np.any(let < 0):
        raise ValueError("LETd must be finite and not negative (keV/µm)")
    _check_alpha_beta(ab, "α/β")


def _check_alpha_beta(ab: np.ndarray, what: str) -> None:
    low, high = ALPHA_BETA_RANGE_GY
    if np.any(~np.isfinite(ab)) or np.any(ab < low) or np.any(ab > high):
        raise ValueError(f"{what} must be between {low:g} and {high:g} Gy")
