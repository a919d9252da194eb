"""3D gamma index (Low et al. 1998, Med. Phys. 25:656) of an evaluated dose against a reference dose.

INTERFACE ONLY on this commit: issue #12 fills in `gamma_3d` (see the brief).
Both doses are on one grid ([z, y, x] arrays, spacing (x, y, z) mm); the
caller resamples first. Criteria follow AAPM TG-218: global normalisation to
the reference maximum by default, a low-dose threshold in % of that maximum.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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

    def pass_rate_in(self, mask: np.ndarray) -> float | None:
        """Pass rate (%) over the evaluated points inside `mask`; None when none is."""
        values = self.gamma[np.asarray(mask, dtype=bool) & ~np.isnan(self.gamma)]
        return float(100.0 * np.count_nonzero(values <= 1.0) / values.size) if values.size else None


def gamma_3d(reference: np.ndarray, evaluated: np.ndarray, spacing_mm: tuple[float, float, float],
             criteria: GammaCriteria, *, max_gamma: float = 2.0) -> GammaMap:
    """The gamma map of `evaluated` against `reference` (same grid, Gy)."""
    raise NotImplementedError("issue #12: gamma_3d")
