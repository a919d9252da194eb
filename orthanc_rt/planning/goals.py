"""Clinical goals: a limit on one dose-volume metric of one ROI, as plan requests, robustness requests, site
protocols and the configuration give them (orthanc_rt.analysis.goals evaluates them on doses).

A goal has a metric (`D<x>`: the dose, Gy, that x % of the ROI receives, interpolated between voxels; `Dmax`,
`Dmean`, `Dmin`; `V<d>Gy`: the % of the ROI receiving at least d Gy; the plans' QA definitions of
orthanc_rt.analysis.dvh_metrics), a lower and/or an upper limit, and a unit: a volume goal is in %, a dose goal in
Gy or in % of a reference dose (the prescription; for a robustness evaluation of a plan without one, the nominal
scenario's value of the same metric). Three spellings are accepted, so requests, protocols and configuration
can use whichever reads best:

- text: `"CTV D95 >= 95 %"`, `"PTV Dmean >= 74 Gy and <= 78 Gy"`;
- `{"roi", "metric", "op", "value", "unit"}` (`op` `>=` or `<=`);
- `{"roi", "metric", "min" and/or "max", "unit"}` (`unit` optional: Gy for a dose, % for a volume).

A goal passes when its value meets every limit. Over scenarios, its worst case is the value with the smallest
margin to a limit: the minimum for a lower limit, the maximum for an upper one.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

from orthanc_rt.errors import ValidationError

METRIC = re.compile(r"^(?:D(\d+(?:\.\d+)?)|Dmax|Dmean|Dmin|V(\d+(?:\.\d+)?)Gy)$")
MAX_GOALS = 50
UNITS = ("Gy", "%")
_CONDITION = r"(>=|<=)\s*([-+0-9.eE]+)\s*(%|Gy)"
_TEXT = re.compile(rf"^\s*(?P<roi>.+?)\s+(?P<metric>\S+)\s*(?P<first>{_CONDITION})"
                   rf"(?:\s+and\s+(?P<second>{_CONDITION}))?\s*$")
_FIELDS = {"roi", "metric", "op", "value", "min", "max", "unit"}


@dataclass(frozen=True)
class Goal:
    roi: str
    metric: str
    min: float | None = None
    max: float | None = None
    unit: str = ""  # "" is the metric's natural unit: % for V<d>Gy, Gy for a dose

    def __post_init__(self) -> None:
        if not self.unit:
            object.__setattr__(self, "unit", "Gy" if self.is_dose else "%")

    @property
    def is_dose(self) -> bool:
        return not self.metric.startswith("V")

    @property
    def relative(self) -> bool:
        """A dose goal in % of a reference dose."""
        return self.is_dose and self.unit == "%"

    @property
    def text(self) -> str:
        limits = [f"{op} {value:g} {self.unit}" for op, value in ((">=", self.min), ("<=", self.max))
                  if value is not None]
        return f"{self.roi} {self.metric} {' and '.join(limits)}"

    def passes(self, value: float) -> bool | None:
        """None when the value is unknown (NaN: the ROI holds no voxel of the dose)."""
        if value != value:
            return None
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def margin(self, value: float) -> float:
        """How far `value` is inside the limits (negative: outside)."""
        return min(value - self.min if self.min is not None else math.inf,
                   self.max - value if self.max is not None else math.inf)

    def as_dict(self) -> dict[str, Any]:
        return {"roi": self.roi, "metric": self.metric, **({"min": self.min} if self.min is not None else {}),
                **({"max": self.max} if self.max is not None else {}), "unit": self.unit}


def parse_goals(value: Any, where: str) -> tuple[Goal, ...]:
    """Goals from a list in any of the spellings of the module docstring; ValidationError names `where`."""
    if isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_GOALS:
        raise ValidationError(where, f"must be a list of 1 to {MAX_GOALS} goals, e.g. [\"CTV D95 >= 95 %\"]")
    return tuple(parse_goal(item, f"{where}[{k}]") for k, item in enumerate(value))


def parse_goal(item: Any, where: str) -> Goal:
    """One goal (module docstring); ValidationError names `where` and what is wrong."""
    if isinstance(item, Goal):
        return item
    if isinstance(item, str):
        item = _from_text(item, where)
    if not isinstance(item, Mapping):
        raise ValidationError(where, "a goal is a text (\"CTV D95 >= 95 %\") or an object {roi, metric, min and/or "
                                     "max, unit}")
    unknown = sorted(set(item) - _FIELDS)
    if unknown:
        raise ValidationError(where, f"unknown field(s) {', '.join(unknown)} (fields: roi, metric, min, max, unit; "
                                     f"or op and value)")
    roi, metric = item.get("roi"), item.get("metric")
    if not isinstance(roi, str) or not roi.strip() or len(roi) > 64:
        raise ValidationError(where, f"roi must be an ROI name of 1 to 64 characters, not {roi!r:.80}")
    if not isinstance(metric, str) or not METRIC.match(metric):
        raise ValidationError(where, f"metric on {roi}: expected D<volume %> (D95, D2), Dmax, Dmean, Dmin or "
                                     f"V<dose>Gy (V70Gy), not {metric!r:.40}")
    if metric[1:].replace(".", "", 1).isdigit() and metric.startswith("D") and not 0 <= float(metric[1:]) <= 100:
        raise ValidationError(where, f"{metric} on {roi}: the volume must be 0-100 %")
    limits = _limits(item, where, f"{metric} on {roi}")
    unit = item.get("unit") or ("Gy" if not metric.startswith("V") else "%")
    if unit not in UNITS or (metric.startswith("V") and unit != "%"):
        raise ValidationError(where, f"unit {unit!r:.10} of {metric} on {roi}: a volume goal is in %, a dose goal in "
                                     f"Gy or % (of the prescription)")
    return Goal(roi.strip(), metric, *limits, unit=unit)


def _from_text(text: str, where: str) -> dict[str, Any]:
    match = _TEXT.match(text)
    if not match:
        raise ValidationError(where, f"{text!r:.80} is not \"<ROI> <metric> >=|<= <value> %|Gy\"")
    item: dict[str, Any] = {"roi": match["roi"], "metric": match["metric"]}
    conditions = [c for c in (match["first"], match["second"]) if c]
    units = set()
    for condition in conditions:
        op, value, unit = re.fullmatch(_CONDITION, condition).groups()
        side = "min" if op == ">=" else "max"
        if side in item:
            raise ValidationError(where, f"{text!r:.80} gives two {op} limits")
        item[side], item["unit"] = value, unit
        units.add(unit)
    if len(units) > 1:
        raise ValidationError(where, f"{text!r:.80}: both limits in one unit")
    return item


def _limits(item: Mapping[str, Any], where: str, what: str) -> tuple[float | None, float | None]:
    if "op" in item or "value" in item:
        if "min" in item or "max" in item:
            raise ValidationError(where, f"{what}: give op and value, or min and/or max, not both")
        if item.get("op") not in (">=", "<="):
            raise ValidationError(where, f"op {item.get('op')!r:.10} of {what} must be >= or <=")
        raw = {"min" if item["op"] == ">=" else "max": item.get("value")}
    else:
        raw = {side: item[side] for side in ("min", "max") if item.get(side) is not None}
        if not raw:
            raise ValidationError(where, f"{what}: give min and/or max")
    limits: dict[str, float] = {}
    for side, value in raw.items():
        try:
            number = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number) or number < 0:
            raise ValidationError(where, f"{what}: {side} must be a finite number >= 0, not {value!r:.40}")
        limits[side] = number
    return limits.get("min"), limits.get("max")
