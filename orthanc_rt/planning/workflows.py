"""The planning workflows Orthanc-RT offers, with their parameters, defaults, units and limits.

`GET /rt/workflows` publishes this table; `POST /rt/plans` merges a
workflow's defaults under the caller's values before validating them
(`orthanc_rt.planning.request`), so the limits shown are the limits enforced.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from orthanc_rt.errors import PlanRequestError
from orthanc_rt.planning import ccc_engine as photon_ccc
from orthanc_rt.planning import request as pr
from orthanc_rt.planning.goals import MAX_GOALS
from orthanc_rt.planning.protocols import SITE_PROTOCOLS


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str  # JSON type: string, number, integer, array, object
    description: str
    default: Any = None
    unit: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    required: bool = False
    max_items: int | None = None  # arrays

    def as_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "type": self.type, "description": self.description, "required": self.required,
               "default": pr.json_ready(self.default)}
        for key in ("unit", "minimum", "maximum", "choices", "max_items"):
            value = getattr(self, key)
            if value not in ("", None, ()):
                out[key] = list(value) if isinstance(value, tuple) else value
        return out


@dataclass(frozen=True)
class Workflow:
    id: str
    title: str
    description: str
    parameters: tuple[Parameter, ...]
    status: Callable[[], dict[str, Any]]
    defaults: dict[str, Any] = field(default_factory=dict)  # merged under a request's own values
    submit_to: str = "POST /rt/plans"

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "description": self.description, "status": self.status(),
                "submit_to": self.submit_to, "parameters": [p.as_dict() for p in self.parameters]}


def _available() -> dict[str, Any]:
    return {"available": True, "reason": ""}


_INPUTS = (
    Parameter("study", "string", "Orthanc study id or StudyInstanceUID", required=True),
    Parameter("ct_series", "string", "Orthanc series id or SeriesInstanceUID of the planning CT; default: the "
              "series the structure set references, else the newest CT on its frame of reference"),
    Parameter("structure_set", "string", "Orthanc instance id or SOPInstanceUID of the RTSTRUCT; default: the "
              "newest structure set of the study that contains the target ROI"),
)
_DEFAULT = pr.PlanRequest("", 0.0)
_TARGET = (
    Parameter("target_roi", "string", "ROI to cover with the prescription", required=True),
    Parameter("prescription_gy", "number", "dose to the target over all fractions", unit="Gy",
              minimum=pr.PRESCRIPTION_RANGE_GY[0], maximum=pr.PRESCRIPTION_RANGE_GY[1], required=True),
    Parameter("fractions", "integer", "number of fractions planned", _DEFAULT.fractions,
              minimum=pr.FRACTIONS_RANGE[0], maximum=pr.FRACTIONS_RANGE[1]),
)


def _beams(default_count: int) -> tuple[Parameter, ...]:
    return (Parameter("beam_count", "integer", "beams evenly spaced from gantry 0 (ignored when gantry_angles_deg "
                      "is given)", default_count, minimum=1, maximum=pr.MAX_BEAMS),
            Parameter("gantry_angles_deg", "array", "explicit IEC gantry angle of each beam", unit="deg",
                      minimum=-360, maximum=360, max_items=pr.MAX_BEAMS))


_OPTIMISATION = (
    Parameter("target_margin_mm", "number", "margin around the target that the beams cover",
              _DEFAULT.target_margin_mm, "mm", *pr.MARGIN_RANGE_MM),
    Parameter("objectives", "array", "[{roi, type, dose_gy, weight, volume_pct}] with type one of "
              f"{', '.join(pr.OBJECTIVE_TYPES)} or their clinical names ({', '.join(pr.OBJECTIVE_ALIASES)}; "
              "volume_pct for DVH types); default: uniform prescription dose "
              "on the target with DMin and DMax (103 %) penalties", choices=pr.OBJECTIVE_TYPES,
              max_items=pr.MAX_OBJECTIVES),
    Parameter("optimizer", "string", "optimiser: orthanc-rt (ours) or one of OpenTPS'", _DEFAULT.optimizer,
              choices=pr.OPTIMIZERS),
    Parameter("max_iterations", "integer", "optimiser iteration limit", _DEFAULT.max_iterations, minimum=1,
              maximum=10_000),
    Parameter("scoring_spacing_mm", "number", "dose grid spacing (default: the CT's)", None, "mm",
              *pr.SCORING_RANGE_MM),
)
_PROTON = (
    Parameter("couch_angles_deg", "array", "couch angle of each beam (default 0)", unit="deg", minimum=-360,
              maximum=360, max_items=pr.MAX_BEAMS),
    Parameter("spot_spacing_mm", "number", "lateral spot spacing", _DEFAULT.spot_spacing_mm, "mm",
              *pr.SPACING_RANGE_MM),
    Parameter("layer_spacing_mm", "number", "energy layer spacing (water-equivalent)", _DEFAULT.layer_spacing_mm,
              "mm", *pr.SPACING_RANGE_MM),
    Parameter("beamlet_primaries", "integer", "Monte Carlo protons per spot for the beamlets (the most: half "
              "the plan time limit for 7,300 spots on two cores)", _DEFAULT.beamlet_primaries,
              minimum=pr.MIN_PRIMARIES, maximum=pr.MAX_BEAMLET_PRIMARIES),
    Parameter("final_primaries", "integer", "Monte Carlo protons for the final dose (the most: half the plan "
              "time limit on two cores)", _DEFAULT.final_primaries, minimum=pr.MIN_PRIMARIES,
              maximum=pr.MAX_FINAL_PRIMARIES),
    Parameter("final_uncertainty_pct", "number", "the final dose stops at this statistical uncertainty in the "
              "high-dose region (MCsquare's estimate) or at final_primaries, whichever comes first; null: "
              "final_primaries", _DEFAULT.final_uncertainty_pct, "%", *pr.UNCERTAINTY_RANGE_PCT),
    Parameter("optimization_grid_mm", "number", "isotropic dose grid of the beamlets and the optimiser (the final "
              "dose stays on scoring_spacing_mm); null: the final dose's grid", _DEFAULT.optimization_grid_mm, "mm",
              *pr.SCORING_RANGE_MM),
    Parameter("protocol", "string", "site protocol giving the fields the request leaves out (objectives with OAR "
              "sparing, clinical goals, prescription and fractions, beam angles, beamlet primaries, the final dose's "
              "grid and cap; doses scaled to the request's prescription)",
              choices=tuple(SITE_PROTOCOLS)),
    Parameter("goals", "array", "clinical goals the QA summary evaluates (pass/fail): [{roi, metric, min and/or "
              "max, unit}] or texts (\"PTV D95 >= 98 %\"), metric D<volume %>, Dmax, Dmean, Dmin (Gy, or % of the "
              "prescription) or V<dose>Gy (%)", max_items=MAX_GOALS),
)
_PHOTON = (
    Parameter("beamlet_spacing_mm", "number", "bixel size on the beam's-eye view at the isocentre",
              _DEFAULT.beamlet_spacing_mm, "mm", *pr.BEAMLET_SPACING_RANGE_MM),
)
_ROBUSTNESS = Parameter("robustness", "object", "systematic errors the plan must withstand: {setup_mm (0-"
                        f"{pr.MAX_SETUP_ERROR_MM:g} mm along each axis), range_pct (0-{pr.MAX_RANGE_ERROR_PCT:g} %)}}; "
                        "MCsquare's reduced scenario set", {"setup_mm": 3.0, "range_pct": 3.0})

WORKFLOWS: dict[str, Workflow] = {w.id: w for w in (
    Workflow("proton-dose", "Proton dose of a stored plan",
             "MCsquare dose of an RT Ion Plan already in Orthanc (also runs automatically when one arrives).",
             (Parameter("primaries", "integer", "Monte Carlo protons (the most: the dose time limit on two cores)",
                        1_000_000, minimum=1000, maximum=pr.MAX_DOSE_JOB_PRIMARIES),
              Parameter("scoring_spacing_mm", "number", "dose grid spacing (default: the CT's)", None, "mm", 1, 10)),
             _available, submit_to="POST /rt/instances/{rtplan}/dose"),
    Workflow("proton-impt", "Proton IMPT",
             "Spot placement, MCsquare beamlets, intensity-modulated optimisation (OpenTPS) and a final MCsquare "
             "dose; stores the RTPLAN and its RTDOSE in the study.",
             _INPUTS + _TARGET + _beams(2) + _OPTIMISATION + _PROTON, _available, defaults={"beam_count": 2}),
    Workflow("proton-robust", "Robust proton IMPT",
             "IMPT with worst-case optimisation of the target over setup and range error scenarios; the QA "
             "summary adds the target's D95/D5 in every scenario and their worst values.",
             _INPUTS + _TARGET + _beams(2) + _OPTIMISATION + _PROTON + (_ROBUSTNESS,), _available,
             defaults={"beam_count": 2, "robustness": {"setup_mm": 3.0, "range_pct": 3.0}}),
    Workflow("photon-ccc", "Photon IMRT (collapsed cone)",
             "Beamlets (bixels) over the target's beam's-eye view, OpenTPS' collapsed-cone convolution engine "
             "(6 MV kernels), intensity-modulated optimisation (OpenTPS), step-and-shoot MLC segments; stores the "
             "RT Plan and its RTDOSE. The engine has no machine output calibration: beamlet weights are relative "
             "fluence, so the plan is not deliverable as is.",
             _INPUTS + _TARGET + _beams(5) + _OPTIMISATION + _PHOTON, photon_ccc.status, defaults={"beam_count": 5}),
)}
PLANNING = ("proton-impt", "proton-robust", "photon-ccc")  # the workflows POST /rt/plans runs


def get(workflow_id: str) -> Workflow:
    """The workflow, or PlanRequestError listing the known ones."""
    if workflow_id not in WORKFLOWS:
        raise PlanRequestError(f"unknown workflow {workflow_id!r}; known: {', '.join(WORKFLOWS)}")
    return WORKFLOWS[workflow_id]
