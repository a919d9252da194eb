"""Site protocols: objectives with OAR sparing and clinical goals (orthanc_rt.planning.goals) for a site.

A request carries goals (`PlanRequest.goals`) or names a protocol (`PlanRequest.protocol`) whose objectives and
goals, given relative to the prescription, are scaled to the request's prescription; the QA summary lists every
goal with its value and pass/fail (`orthanc_rt.analysis.goals`).

The prostate protocol (docs/planning.md#prostate-protocol) is written for 76 Gy in 38 fractions: its goals are
the issue's (ICRU 78-style coverage: PTV D95 >= 98 %, D2 <= 105 %; QUANTEC-style OAR limits: rectum V70Gy
<= 20 %, bladder V70Gy <= 15 %, femoral heads Dmax < 50 Gy), each OAR dose as a fraction of 76 Gy.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from orthanc_rt.errors import PlanRequestError

if TYPE_CHECKING:
    from orthanc_rt.planning.request import PlanRequest

_PROSTATE_RX = 76.0

# Objectives and goals relative to the prescription ("rx": a fraction of it); "{target}" is the request's target.
SITE_PROTOCOLS: dict[str, dict[str, Any]] = {
    "prostate": {
        "prescription_gy": _PROSTATE_RX, "fractions": 38, "gantry_angles_deg": (90.0, 270.0),
        # The final dose on a 3 mm grid (AAPM MPPG 5.a: a dose grid of 3 mm or finer), capped at 2e7 primaries: 1 %
        # at prostate size takes about 1.5e7 there, and on a 2 mm grid 3.3e7. 700 primaries per beamlet: the plan in
        # 9 minutes instead of 10, its goals met as with 1,000 (docs/planning.md#site-protocols-prostate).
        "scoring_spacing_mm": 3.0, "final_primaries": 20_000_000, "beamlet_primaries": 700,
        "objectives": (
            {"roi": "{target}", "type": "DUniform", "rx": 1.0, "weight": 1.0},
            # DMin at the prescription, not at the D95 goal's 98 %: the final dose's noise reads D95 about 1.3 %
            # of the prescription lower than the optimiser's dose, and D2 about 1.4 % higher (measured at 1 %: D95
            # 99.5 -> 98.2 %; with DMin at 98 %, 98.8 -> 97.6 %, short of the goal). Weight 10 rather than 5 or a
            # DMin at 101 %: the optimiser's D95 / D2 99.7 / 102.5 % against 99.5 / 102.3 % and 100.2 / 103.1 %,
            # the middle of the room between the two goals once noise is added.
            {"roi": "{target}", "type": "DMin", "rx": 1.0, "weight": 10.0},
            {"roi": "{target}", "type": "DMax", "rx": 1.04, "weight": 5.0},
            {"roi": "Rectum", "type": "DVHMax", "rx": 65.0 / _PROSTATE_RX, "volume_pct": 15.0, "weight": 1.0},
            {"roi": "Bladder", "type": "DVHMax", "rx": 65.0 / _PROSTATE_RX, "volume_pct": 10.0, "weight": 1.0},
            {"roi": "FemoralHead_L", "type": "DMax", "rx": 40.0 / _PROSTATE_RX, "weight": 1.0},
            {"roi": "FemoralHead_R", "type": "DMax", "rx": 40.0 / _PROSTATE_RX, "weight": 1.0},
        ),
        "goals": (
            {"roi": "{target}", "metric": "D95", "min_rx": 0.98},
            {"roi": "{target}", "metric": "D2", "max_rx": 1.05},
            {"roi": "Rectum", "metric": "V{70}Gy", "max": 20.0},
            {"roi": "Bladder", "metric": "V{70}Gy", "max": 15.0},
            {"roi": "FemoralHead_L", "metric": "Dmax", "max_rx": 50.0 / _PROSTATE_RX},
            {"roi": "FemoralHead_R", "metric": "Dmax", "max_rx": 50.0 / _PROSTATE_RX},
        ),
    },
}


def protocol_fields(name: str, target_roi: str, prescription_gy: float | None = None) -> dict[str, Any]:
    """The request fields of site protocol `name` for `target_roi`, scaled to `prescription_gy` (default: its own)."""
    if name not in SITE_PROTOCOLS:
        raise PlanRequestError(f"protocol {name!r} is not one of {', '.join(SITE_PROTOCOLS)}")
    protocol = SITE_PROTOCOLS[name]
    rx = float(prescription_gy if prescription_gy is not None else protocol["prescription_gy"])
    scale = rx / protocol["prescription_gy"]

    def roi(value: str) -> str:
        return target_roi if value == "{target}" else value

    objectives = [{"roi": roi(o["roi"]), "type": o["type"], "dose_gy": round(o["rx"] * rx, 4),
                   "weight": o["weight"], **({"volume_pct": o["volume_pct"]} if "volume_pct" in o else {})}
                  for o in protocol["objectives"]]
    goals = []
    for g in protocol["goals"]:
        # V{70}Gy: the dose level scales with the prescription like the objectives.
        metric = re.sub(r"\{(\d+(?:\.\d+)?)\}", lambda m: f"{float(m.group(1)) * scale:g}", g["metric"])
        goal = {"roi": roi(g["roi"]), "metric": metric}
        for side in ("min", "max"):
            if f"{side}_rx" in g:
                goal[side] = round(g[f"{side}_rx"] * rx, 4)
            elif side in g:
                goal[side] = g[side]
        goals.append(goal)
    return {"prescription_gy": rx, "fractions": protocol["fractions"],
            "gantry_angles_deg": list(protocol["gantry_angles_deg"]),
            **{key: protocol[key] for key in ("scoring_spacing_mm", "final_primaries", "beamlet_primaries")},
            "objectives": objectives, "goals": goals}


def protocol_request(name: str, *, target_roi: str, prescription_gy: float | None = None) -> PlanRequest:
    """A PlanRequest of site protocol `name` (for benchmarks and tests; the REST path uses `protocol` in the body)."""
    from orthanc_rt.planning.request import PlanRequest  # request imports this module

    return PlanRequest.from_dict({"target_roi": target_roi, **protocol_fields(name, target_roi, prescription_gy)})
