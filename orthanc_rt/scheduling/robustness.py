"""A robustness evaluation request: its validated parameters, its clinical goals and its error scenarios.

Scenario sets (docs/robustness.md): systematic errors only, each scenario a
rigid shift of the dose relative to the patient (the beams' isocentre moved
by `shift_mm` in patient coordinates, which is the patient displaced by
-`shift_mm`) and a relative change of every proton range (`range_pct`: +3.5
means ranges 3.5 % longer, densities divided by 1.035):

- "reduced" (MCsquare's ReducedSet): the nominal position and +-setup along
  each patient axis, each with the nominal range and +-range: 7 x 3 = 21.
- "full": every combination of {-setup, 0, +setup} on the three axes and
  {-range, 0, +range}: 27 x 3 = 81.
- {"random": n, "seed": s}: the nominal scenario and n samples with every
  shift component drawn from N(0, setup) and the range error from N(0, range)
  (a seeded numpy generator: the same seed gives the same scenarios).

Scenarios that coincide (an error of 0) are listed once. The nominal scenario is always first.

Goals: `{"roi": "CTV", "metric": "D95", "op": ">=", "value": 95, "unit": "%"}` or the same as the text
"CTV D95 >= 95 %". Metrics: Dx (dose to x % of the ROI), Dmean, Dmax, Dmin, VxGy (% of the ROI receiving at
least x Gy). A dose goal in "%" is relative to the prescription (`prescription_gy`), or when none is known to
the nominal scenario's value of the same metric; its records say which.
"""
from __future__ import annotations

import itertools
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np

from orthanc_rt.errors import ValidationError
from orthanc_rt.scheduling.params import field_number

SETUP_RANGE_MM = (0.0, 10.0)
RANGE_ERROR_RANGE_PCT = (0.0, 10.0)
RANDOM_SCENARIOS_RANGE = (1, 100)
SCENARIO_SETS = ("reduced", "full")
MAX_GOALS = 50
OPS = (">=", "<=")
_METRIC = re.compile(r"^(D(\d+(?:\.\d+)?)|Dmean|Dmax|Dmin|V(\d+(?:\.\d+)?)Gy)$")
_GOAL_TEXT = re.compile(r"^\s*(?P<roi>.+?)\s+(?P<metric>\S+)\s*(?P<op>>=|<=)\s*(?P<value>[-+0-9.eE]+)\s*"
                        r"(?P<unit>%|Gy)\s*$")
# The default goal when the request names neither goals nor a protocol: target coverage.
DEFAULT_TARGET_COVERAGE_PCT = 95.0


@dataclass(frozen=True)
class Scenario:
    shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    range_pct: float = 0.0

    @property
    def nominal(self) -> bool:
        return not any(self.shift_mm) and not self.range_pct

    @property
    def name(self) -> str:
        """"nominal", "x+3mm", "x+3mm z-3mm range-3.5%" (round to 0.1)."""
        parts = [f"{axis}{value:+g}mm" for axis, value in zip("xyz", (round(v, 1) for v in self.shift_mm)) if value]
        if round(self.range_pct, 1):
            parts.append(f"range{round(self.range_pct, 1):+g}%")
        return " ".join(parts) or "nominal"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shift_mm": list(self.shift_mm), "range_pct": self.range_pct}


@dataclass(frozen=True)
class Goal:
    roi: str
    metric: str  # D95, Dmean, Dmax, Dmin, V70Gy
    op: str  # >= or <=
    value: float
    unit: str  # "%" or "Gy"

    @property
    def text(self) -> str:
        return f"{self.roi} {self.metric} {self.op} {self.value:g} {self.unit}"

    @property
    def is_dose(self) -> bool:
        return not self.metric.startswith("V")

    def passes(self, value: float) -> bool:
        return value >= self.value if self.op == ">=" else value <= self.value

    def worst(self, values: list[float]) -> float:
        """The least favourable of the scenarios' values."""
        return min(values) if self.op == ">=" else max(values)


@dataclass(frozen=True)
class RobustnessParams:
    setup_error_mm: float
    range_error_pct: float
    scenarios: Any  # "reduced", "full" or {"random": n, "seed": s}
    primaries: int
    goals: tuple[Goal, ...] = ()
    protocol: str | None = None
    goals_from: str = "default"  # request, protocol <name>, default (target coverage)
    scenario_list: tuple[Scenario, ...] = field(default=(), compare=False)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["goals"] = [asdict(goal) for goal in self.goals]
        data["scenario_list"] = [scenario.as_dict() for scenario in self.scenario_list]
        return data

    def identity(self) -> dict[str, Any]:
        return {"setup_error_mm": self.setup_error_mm, "range_error_pct": self.range_error_pct,
                "scenarios": self.scenarios, "primaries": self.primaries,
                "goals": [goal.text for goal in self.goals]}


def robustness_params(body: Mapping[str, Any] | None, config: Mapping[str, Any], *,
                      primaries_range: tuple[int, int], default_primaries: int) -> RobustnessParams:
    """Validate a request body (ValidationError names the field); `config` is OrthancRT.Robustness."""
    body = dict(body or {})
    known = {"setup_error_mm", "range_error_pct", "scenarios", "primaries", "goals", "protocol"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise ValidationError(unknown[0], f"unknown field; expected one of {sorted(known)}")
    setup = field_number(body, "setup_error_mm", 3.0, integer=False, limits=SETUP_RANGE_MM)
    range_pct = field_number(body, "range_error_pct", 3.5, integer=False, limits=RANGE_ERROR_RANGE_PCT)
    primaries = field_number(body, "primaries", default_primaries, integer=True, limits=primaries_range)
    chosen = body.get("scenarios", "reduced")
    scenarios = scenario_set(chosen, setup, range_pct)
    if "goals" in body and "protocol" in body:
        raise ValidationError("protocol", "give goals or a protocol, not both")
    protocol = body.get("protocol")
    if "goals" in body:
        goals, origin = parse_goals(body["goals"], "goals"), "request"
    elif protocol is not None:
        protocols = dict(config.get("Protocols") or {})
        if not isinstance(protocol, str) or protocol not in protocols:
            raise ValidationError("protocol", f"no protocol {protocol!r:.60} in OrthancRT.Robustness.Protocols "
                                              f"(known: {', '.join(sorted(protocols)) or 'none'})")
        goals, origin = parse_goals(protocols[protocol], f"OrthancRT.Robustness.Protocols.{protocol}"), \
            f"protocol {protocol}"
    else:
        goals, origin = (), "default"
    return RobustnessParams(setup_error_mm=setup, range_error_pct=range_pct, scenarios=chosen,
                            primaries=int(primaries), goals=goals, protocol=protocol, goals_from=origin,
                            scenario_list=tuple(scenarios))


def scenario_set(chosen: Any, setup_mm: float, range_pct: float) -> list[Scenario]:
    """The scenarios of a set (module docstring), nominal first, each once."""
    if chosen == "reduced":
        shifts = [(0.0, 0.0, 0.0)] + [tuple(sign * setup_mm if k == axis else 0.0 for k in range(3))
                                      for axis in range(3) for sign in (1, -1)]
        candidates = [Scenario(shift, r) for r in (0.0, range_pct, -range_pct) for shift in shifts]
    elif chosen == "full":
        steps = (0.0, setup_mm, -setup_mm)
        candidates = [Scenario(shift, r) for r in (0.0, range_pct, -range_pct)
                      for shift in itertools.product(steps, steps, steps)]
    elif isinstance(chosen, dict):
        extra = sorted(set(chosen) - {"random", "seed"})
        if extra:
            raise ValidationError("scenarios", f"unknown key {extra[0]!r:.40}; a random set is "
                                               "{\"random\": n, \"seed\": s}")
        n = field_number({"scenarios.random": chosen.get("random")}, "scenarios.random", None, integer=True,
                         limits=RANDOM_SCENARIOS_RANGE)
        seed = chosen.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
            raise ValidationError("scenarios.seed", f"must be a whole number 0..2^32-1, got {seed!r:.40}")
        rng = np.random.default_rng(seed)
        candidates = [Scenario()] + [Scenario(tuple(float(v) for v in rng.normal(0.0, setup_mm, 3).round(2)),
                                              float(round(rng.normal(0.0, range_pct), 2))) for _ in range(int(n))]
    else:
        raise ValidationError("scenarios", f"must be \"reduced\", \"full\" or {{\"random\": n, \"seed\": s}}, got "
                                           f"{chosen!r:.40}")
    unique: dict[tuple, Scenario] = {}
    for scenario in candidates:
        scenario = Scenario(tuple(v + 0.0 for v in scenario.shift_mm), scenario.range_pct + 0.0)  # -0.0 -> 0.0
        unique.setdefault((scenario.shift_mm, scenario.range_pct), scenario)
    return list(unique.values())


def parse_goals(value: Any, where: str) -> tuple[Goal, ...]:
    """Goals from a list of texts ("CTV D95 >= 95 %") or objects; ValidationError names `where`."""
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_GOALS:
        raise ValidationError(where, f"must be a list of 1 to {MAX_GOALS} goals, e.g. [\"CTV D95 >= 95 %\"]")
    return tuple(_goal(item, f"{where}[{k}]") for k, item in enumerate(value))


def _goal(item: Any, where: str) -> Goal:
    if isinstance(item, str):
        match = _GOAL_TEXT.match(item)
        if not match:
            raise ValidationError(where, f"{item!r:.80} is not \"<ROI> <metric> >=|<= <value> %|Gy\"")
        item = match.groupdict()
    if not isinstance(item, dict) or set(item) != {"roi", "metric", "op", "value", "unit"}:
        raise ValidationError(where, "a goal has roi, metric, op, value and unit")
    roi, metric, op, unit = (item[k] for k in ("roi", "metric", "op", "unit"))
    if not isinstance(roi, str) or not roi.strip() or len(roi) > 64:
        raise ValidationError(where, f"roi {roi!r:.40} must be 1 to 64 characters")
    if not isinstance(metric, str) or not _METRIC.match(metric):
        raise ValidationError(where, f"metric {metric!r:.40}: expected Dx (e.g. D95), Dmean, Dmax, Dmin or VxGy")
    if op not in OPS:
        raise ValidationError(where, f"op {op!r:.10} must be >= or <=")
    try:
        number = float(item["value"])
    except (TypeError, ValueError):
        raise ValidationError(where, f"value {item['value']!r:.40} is not a number") from None
    if not math.isfinite(number) or number < 0:
        raise ValidationError(where, f"value {number} must be a finite number >= 0")
    is_volume = metric.startswith("V")
    if unit not in ("%", "Gy") or (is_volume and unit != "%"):
        raise ValidationError(where, f"unit {unit!r:.10}: a volume goal is in %, a dose goal in % or Gy")
    if metric.startswith("D") and metric[1:].replace(".", "", 1).isdigit() and not 0 <= float(metric[1:]) <= 100:
        raise ValidationError(where, f"{metric}: the volume must be 0-100 %")
    return Goal(roi=roi.strip(), metric=metric, op=op, value=number, unit=unit)


# OrthancRT.AutoRobustness keys -> request fields.
_AUTO_FIELDS = {"SetupErrorMm": "setup_error_mm", "RangeErrorPct": "range_error_pct", "Scenarios": "scenarios",
                "Primaries": "primaries", "Goals": "goals", "Protocol": "protocol"}


@dataclass(frozen=True)
class AutoRobustness:
    """OrthancRT.AutoRobustness: evaluate every arriving RT Ion Plan whose RTPlanLabel matches `label_pattern`
    (a regular expression, searched; "" matches every plan) with the request `params`."""

    enabled: bool = False
    label_pattern: str = ""
    params: RobustnessParams | None = None
    problem: str = ""  # why a configured rule is off (logged at start-up)

    def matches(self, plan_label: str) -> bool:
        return self.enabled and self.params is not None and re.search(self.label_pattern, plan_label or "") is not None

    @classmethod
    def of(cls, settings: Any, *, primaries_range: tuple[int, int]) -> "AutoRobustness":
        """From the settings; a rule with an invalid key or value is off, with the reason in `problem`."""
        config = dict(settings.auto_robustness or {})
        if not config.get("Enabled", False):
            return cls()
        try:
            unknown = sorted(set(config) - {"Enabled", "LabelPattern", *_AUTO_FIELDS})
            if unknown:
                raise ValidationError(unknown[0], "unknown key")
            pattern = str(config.get("LabelPattern", ""))
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValidationError("LabelPattern", f"not a regular expression: {exc}") from None
            body = {name: config[key] for key, name in _AUTO_FIELDS.items() if key in config}
            params = robustness_params(body, settings.robustness, primaries_range=primaries_range,
                                       default_primaries=settings.auto_dose.primaries)
        except ValidationError as exc:
            return cls(problem=f"OrthancRT.AutoRobustness: {exc}")
        return cls(enabled=True, label_pattern=pattern, params=params)
