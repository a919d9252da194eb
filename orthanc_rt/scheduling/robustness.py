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

Goals (orthanc_rt.planning.goals): "CTV D95 >= 95 %" or the same as an object. A dose goal in "%" is relative
to the plan's prescription, or when none is known to the nominal scenario's value of the same metric; its
records say which.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np

from orthanc_rt.errors import ValidationError
from orthanc_rt.planning.goals import Goal, parse_goals
from orthanc_rt.scheduling.params import field_number

SETUP_RANGE_MM = (0.0, 10.0)
RANGE_ERROR_RANGE_PCT = (0.0, 10.0)
RANDOM_SCENARIOS_RANGE = (1, 100)
SCENARIO_SETS = ("reduced", "full")
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
        data["goals"] = [goal.as_dict() for goal in self.goals]
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
