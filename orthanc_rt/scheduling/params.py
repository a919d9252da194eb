"""Validated parameters of dose jobs; the only place their limits are defined."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from orthanc_rt.errors import ValidationError
from orthanc_rt.planning.request import MAX_DOSE_JOB_PRIMARIES
from orthanc_rt.settings import AutoAnalysis, AutoDose

# Few primaries give noisy but fast doses (tests, previews); the most is what MCsquare does within the dose job
# time limit here (1e9, orthanc_rt.planning.request says how it is derived).
PRIMARIES_RANGE = (1_000, MAX_DOSE_JOB_PRIMARIES)
SPACING_RANGE_MM = (0.5, 10.0)
WAIT_RANGE_S = (0, 7 * 24 * 3600)


@dataclass(frozen=True)
class DoseParams:
    primaries: int
    scoring_spacing_mm: float | None
    wait_for_ct_seconds: int
    # Report dose inside the body only, on a grid cropped to the dose region (orthanc_rt.analysis.body).
    restrict_to_body: bool = True
    crop_grid: bool = True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def identity(self) -> dict[str, Any]:
        """What the dose depends on (the wait does not change the result).

        The body restriction and cropping appear only when turned off, so a job
        requested with the defaults keeps the id it had before they existed.
        """
        identity: dict[str, Any] = {"primaries": self.primaries, "scoring_spacing_mm": self.scoring_spacing_mm}
        identity.update({name: False for name in _SWITCHES if not getattr(self, name)})
        return identity


_SWITCHES = ("restrict_to_body", "crop_grid")


def dose_params(body: Mapping[str, Any] | None, defaults: AutoDose) -> DoseParams:
    """Validate a request body (JSON object) against the limits, filling defaults."""
    body = dict(body or {})
    known = {"primaries", "scoring_spacing_mm", "wait_for_ct_seconds", *_SWITCHES}
    unknown = sorted(set(body) - known)
    if unknown:
        raise ValidationError(unknown[0], f"unknown field; expected one of {sorted(known)}")
    primaries = _number(body, "primaries", defaults.primaries, integer=True, limits=PRIMARIES_RANGE)
    spacing = body.get("scoring_spacing_mm", defaults.scoring_spacing_mm)
    if spacing is not None:
        spacing = _number(body, "scoring_spacing_mm", spacing, integer=False, limits=SPACING_RANGE_MM)
    wait = _number(body, "wait_for_ct_seconds", defaults.wait_for_ct_seconds, integer=True, limits=WAIT_RANGE_S)
    switches = {name: _switch(body, name) for name in _SWITCHES}
    return DoseParams(primaries=int(primaries), scoring_spacing_mm=spacing, wait_for_ct_seconds=int(wait),
                      **switches)


def _switch(body: Mapping[str, Any], name: str) -> bool:
    value = body.get(name, True)
    if not isinstance(value, bool):
        raise ValidationError(name, f"must be true or false, got {type(value).__name__} {value!r:.40}")
    return value


def _number(body: Mapping[str, Any], name: str, default: Any, *, integer: bool, limits: tuple) -> float | int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(name, f"must be a number, got {type(value).__name__} {value!r:.40}")
    if isinstance(value, float) and not math.isfinite(value):  # JSON parsers accept NaN/Infinity; int() would raise
        raise ValidationError(name, f"must be a finite number, got {value}")
    if integer and int(value) != value:
        raise ValidationError(name, f"must be a whole number, got {value}")
    low, high = limits
    if not low <= value <= high:
        raise ValidationError(name, f"must be between {low:g} and {high:g}, got {value:g}")
    return int(value) if integer else float(value)


@dataclass(frozen=True)
class AnalysisParams:
    """What a dose analysis reports besides Dmin/Dmean/Dmax and the curve (part of the job's identity).

    `v_at_dose_pct` is relative to `reference_dose_gy` (e.g. the prescription);
    without one, to the maximum of the dose grid (the details of each row say which).
    """

    d_at_volume_pct: tuple[float, ...] = AutoAnalysis.d_at_volume_pct
    v_at_dose_gy: tuple[float, ...] = AutoAnalysis.v_at_dose_gy
    v_at_dose_pct: tuple[float, ...] = AutoAnalysis.v_at_dose_pct
    reference_dose_gy: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"d_at_volume_pct": list(self.d_at_volume_pct), "v_at_dose_gy": list(self.v_at_dose_gy),
                "v_at_dose_pct": list(self.v_at_dose_pct), "reference_dose_gy": self.reference_dose_gy}

    @classmethod
    def from_settings(cls, auto: AutoAnalysis) -> "AnalysisParams":
        return cls(d_at_volume_pct=auto.d_at_volume_pct, v_at_dose_gy=auto.v_at_dose_gy,
                   v_at_dose_pct=auto.v_at_dose_pct, reference_dose_gy=auto.reference_dose_gy)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "AnalysisParams":
        return cls(d_at_volume_pct=tuple(float(v) for v in data.get("d_at_volume_pct", cls.d_at_volume_pct)),
                   v_at_dose_gy=tuple(float(v) for v in data.get("v_at_dose_gy", cls.v_at_dose_gy)),
                   v_at_dose_pct=tuple(float(v) for v in data.get("v_at_dose_pct", cls.v_at_dose_pct)),
                   reference_dose_gy=data.get("reference_dose_gy"))
