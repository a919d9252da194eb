"""What a plan request may ask for, and its validation (plain Python: the plugin checks requests with it).

`PlanRequest` holds the planning parameters of the IMPT engine
(`worker.planning.impt.plan_impt`); the limits below are the ones `/rt/workflows`
publishes. `validate_parameters` needs nothing but the request, so the REST
layer answers 400 before a job exists; `validate_rois` checks the ROIs it
names against a structure set's ({name: has contours}); `objective_conflicts` notes
objectives no dose can meet together, for the QA summary.
"""
from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass
from typing import Mapping

import numpy as np

from orthanc_rt.errors import PlanRequestError, ValidationError
from orthanc_rt.planning.goals import MAX_GOALS, Goal, parse_goal
from orthanc_rt.planning.protocols import protocol_fields
from orthanc_rt.settings import default_of

OBJECTIVE_TYPES = ("DMin", "DMax", "DMean", "DUniform", "DVHMin", "DVHMax")
# The names clinical planning systems show (RayStation's optimisation functions), accepted for the types above.
OBJECTIVE_ALIASES = {"min dose": "DMin", "max dose": "DMax", "average dose": "DMean", "mean dose": "DMean",
                     "uniform dose": "DUniform", "min dvh": "DVHMin", "max dvh": "DVHMax"}
# "orthanc-rt": ours (worker.planning.optimizer; robust requests go to OpenTPS' Scipy_L-BFGS-B); the others OpenTPS'.
OPTIMIZERS = ("Scipy_L-BFGS-B", "Scipy_BFGS", "Scipy_SLSQP", "Scipy_trust-constr", "Gradient", "BFGS", "LBFGS",
              "FISTA", "orthanc-rt")
MAX_BEAMS = 9
PRESCRIPTION_RANGE_GY = (0.1, 100.0)  # plan dose; beyond this a typo is likelier than a treatment
FRACTIONS_RANGE = (1, 60)
SPACING_RANGE_MM = (1.0, 20.0)
BEAMLET_SPACING_RANGE_MM = (2.0, 20.0)  # photon bixels at the isocentre
MARGIN_RANGE_MM = (0.0, 30.0)
SCORING_RANGE_MM = (1.0, 10.0)
# The optimiser's dose grid: 3 mm is the clinical norm for optimisation; the final dose stays on the finer grid.
DEFAULT_OPTIMIZATION_GRID_MM = 3.0
# Final dose to a statistical uncertainty (proton_dose.compute_dose_to_uncertainty, its definition
# mcsquare.STAT_UNCERTAINTY_DEFINITION): below 0.2 % the primaries cap decides anyway; above 10 % D95 and D2 are read
# off noise.
UNCERTAINTY_RANGE_PCT = (0.2, 10.0)
DEFAULT_FINAL_UNCERTAINTY_PCT = 1.0
MAX_SETUP_ERROR_MM = 10.0
MAX_RANGE_ERROR_PCT = 10.0
MAX_ROI_NAME = 64  # DICOM's ROIName is an LO: 64 characters
MAX_OBJECTIVES = 50  # a clinical plan has a few per ROI and a few dozen ROIs at most
MIN_PRIMARIES = 100


def _round_down(value: float) -> int:
    """`value` rounded down to one significant digit (1.19e9 -> 1e9)."""
    scale = 10 ** (len(str(int(value))) - 1)
    return int(value // scale * scale)


# Monte Carlo primaries: bounded so that one request cannot hold a worker for a whole job time limit, derived
# from the default time limits and what MCsquare does here on two cores (docs/planning.md#monte-carlo-primaries):
# a dose at about 1.1e5 primaries/s; beamlets at about 2e4 primaries/s on a clinical grid (a 2-field prostate
# plan, 7,300 spots at 5,000 primaries each, took about half an hour).
# - a dose job is one Monte Carlo run: 3 h x 1.1e5/s = 1.19e9 -> 1e9;
# - a plan job runs beamlets, optimisation and a final dose: each Monte Carlo stage alone fits in half of its
#   6 h, final dose 10,800 s x 1.1e5/s = 1.19e9 -> 1e9, beamlets 10,800 s x 2e4/s / 7,300 spots = 29,600
#   -> 2e4 per spot.
DOSE_PRIMARIES_PER_S = 1.1e5
BEAMLET_PRIMARIES_PER_S = 2.0e4
REFERENCE_SPOTS = 7_300
STAGE_SHARE_OF_PLAN_TIME_LIMIT = 0.5
_STAGE_S = STAGE_SHARE_OF_PLAN_TIME_LIMIT * default_of("plan_job_timeout_seconds")
MAX_DOSE_JOB_PRIMARIES = _round_down(default_of("dose_job_timeout_seconds") * DOSE_PRIMARIES_PER_S)
MAX_FINAL_PRIMARIES = _round_down(_STAGE_S * DOSE_PRIMARIES_PER_S)
MAX_BEAMLET_PRIMARIES = _round_down(_STAGE_S * BEAMLET_PRIMARIES_PER_S / REFERENCE_SPOTS)


@dataclass(frozen=True)
class Objective:
    roi: str
    type: str  # one of OBJECTIVE_TYPES (OpenTPS FidObjective.Metrics values)
    dose_gy: float  # plan dose
    weight: float = 1.0
    volume_pct: float | None = None  # DVHMin/DVHMax only: D(volume_pct) >= / <= dose_gy
    robust: bool | None = None  # worst case over the error scenarios; None: robust on the target of a robust plan


@dataclass(frozen=True)
class Robustness:
    """Systematic errors the plan must withstand (MCsquare's reduced scenario set: 20 scenarios when both are set)."""

    setup_mm: float = 0.0  # patient shift along each axis, both directions
    range_pct: float = 0.0  # stopping power scaling, both directions

    @property
    def enabled(self) -> bool:
        return bool(self.setup_mm or self.range_pct)


@dataclass(frozen=True)
class PlanRequest:
    """What to plan. Angles win over `beam_count` (evenly spaced gantry angles from 0, couch 0)."""

    target_roi: str
    prescription_gy: float  # dose to the target over all fractions
    fractions: int = 1
    gantry_angles_deg: tuple[float, ...] | None = None
    couch_angles_deg: tuple[float, ...] | None = None
    beam_count: int | None = None
    spot_spacing_mm: float = 5.0
    layer_spacing_mm: float = 5.0
    target_margin_mm: float = 5.0
    objectives: tuple[Objective, ...] | None = None  # None: default_objectives()
    robustness: Robustness | None = None  # None or zero errors: nominal optimisation
    # Per spot. 1,000: a prostate plan's beamlets in about 5 minutes on two cores; its final dose matched 2,000's
    # within the final dose's noise (docs/planning.md#fewer-beamlet-primaries-measured).
    beamlet_primaries: int = 1_000
    final_primaries: int = 1_000_000  # with final_uncertainty_pct: the cap
    # The final dose stops at this uncertainty or at final_primaries, whichever comes first; None: final_primaries.
    final_uncertainty_pct: float | None = DEFAULT_FINAL_UNCERTAINTY_PCT
    optimizer: str = "orthanc-rt"  # worker.planning.optimizer; measured against OpenTPS in docs/planning.md
    max_iterations: int = 300
    scoring_spacing_mm: float | None = None  # None: the CT grid (the final dose's grid)
    # Beamlets and optimisation on this isotropic grid (mm); None: on the final dose's grid (the pre-#14 path).
    optimization_grid_mm: float | None = DEFAULT_OPTIMIZATION_GRID_MM
    beamlet_spacing_mm: float = 5.0  # photons (photon-ccc): bixel size on the beam's-eye view at the isocentre
    # A site protocol (orthanc_rt.planning.protocols.SITE_PROTOCOLS) gives the fields the request leaves out.
    protocol: str | None = None
    goals: tuple[Goal, ...] | None = None  # clinical goals the QA summary evaluates

    @classmethod
    def from_dict(cls, payload: dict) -> "PlanRequest":
        """A request from JSON-like data (objectives and robustness as dicts); unknown keys are refused."""
        if not isinstance(payload, dict):
            raise PlanRequestError(f"a plan request is an object, not {type(payload).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(payload) - known)
        if unknown:
            raise PlanRequestError(f"unknown plan request field(s) {', '.join(unknown)}; "
                                   f"known: {', '.join(sorted(known))}")
        needed = ("target_roi",) if payload.get("protocol") is not None else ("target_roi", "prescription_gy")
        missing = sorted(name for name in needed if name not in payload)
        if missing:
            raise PlanRequestError(f"a plan request needs {', '.join(missing)}")
        values = dict(payload)
        if values.get("protocol") is not None:
            if not isinstance(values["protocol"], str):
                raise PlanRequestError(f"protocol must be a protocol name, not {values['protocol']!r:.40}")
            rx = values["prescription_gy"] if _is_number(values.get("prescription_gy")) else None
            values = {**protocol_fields(values["protocol"], str(values["target_roi"]), rx), **values}
            if "beam_count" in payload and "gantry_angles_deg" not in payload:
                values.pop("gantry_angles_deg")  # the request's beam count wins over the protocol's angles
        if values.get("goals") is not None:
            if not isinstance(values["goals"], (list, tuple)):
                raise PlanRequestError(f"goals must be a list, not {type(values['goals']).__name__}")
            if len(values["goals"]) > MAX_GOALS:
                raise PlanRequestError(f"goals: at most {MAX_GOALS}, not {len(values['goals'])}")
            try:
                values["goals"] = tuple(parse_goal(g, f"goal {k}") for k, g in enumerate(values["goals"], start=1))
            except ValidationError as exc:
                raise PlanRequestError(str(exc)) from None
        for name in ("gantry_angles_deg", "couch_angles_deg", "objectives"):
            if values.get(name) is not None and not isinstance(values[name], (list, tuple)):
                raise PlanRequestError(f"{name} must be a list, not {type(values[name]).__name__}")
        for name in ("gantry_angles_deg", "couch_angles_deg"):
            if values.get(name) is not None:
                if not all(_is_number(a) for a in values[name]):
                    raise PlanRequestError(f"{name} must be a list of numbers (degrees), not {values[name]!r}")
                values[name] = tuple(values[name])
        if values.get("robustness") is not None and not isinstance(values["robustness"], dict):
            raise PlanRequestError("robustness must be an object {setup_mm, range_pct}")
        if values.get("objectives") is not None:
            _at_most_objectives(len(values["objectives"]))
            values["objectives"] = tuple(_objective(item, index)
                                         for index, item in enumerate(values["objectives"], start=1))
        if values.get("robustness") is not None:
            try:
                values["robustness"] = Robustness(**values["robustness"])
            except TypeError as exc:
                raise PlanRequestError(f"robustness: {exc} (fields: setup_mm, range_pct)") from None
        return cls(**values)

    def as_dict(self) -> dict:
        """JSON-ready; `from_dict(as_dict())` gives the same request."""
        return json_ready(asdict(self))

    @property
    def gantry_angles(self) -> tuple[float, ...]:
        if self.gantry_angles_deg is not None:
            return tuple(float(a) for a in self.gantry_angles_deg)
        count = 1 if self.beam_count is None else int(self.beam_count)
        return tuple(round(360.0 * k / count, 6) for k in range(count))

    @property
    def couch_angles(self) -> tuple[float, ...]:
        if self.couch_angles_deg is not None:
            return tuple(float(a) for a in self.couch_angles_deg)
        return (0.0,) * len(self.gantry_angles)

    def default_objectives(self) -> tuple[Objective, ...]:
        """Uniform dose to the target at the prescription, with under- and overdose penalties."""
        rx = float(self.prescription_gy)
        return (Objective(self.target_roi, "DUniform", rx, 1.0),
                Objective(self.target_roi, "DMin", rx, 1.0),
                Objective(self.target_roi, "DMax", 1.03 * rx, 1.0))

    @property
    def effective_objectives(self) -> tuple[Objective, ...]:
        return tuple(self.objectives) if self.objectives else self.default_objectives()


def _at_most_objectives(count: int) -> None:
    if count > MAX_OBJECTIVES:
        raise PlanRequestError(f"objectives: at most {MAX_OBJECTIVES}, not {count}")


def _objective(item: dict, index: int) -> Objective:
    if not isinstance(item, dict):
        raise PlanRequestError(f"objective {index}: expected an object with roi, type, dose_gy, weight, volume_pct")
    kind = item.get("type")
    if isinstance(kind, str) and kind.strip().lower() in OBJECTIVE_ALIASES:
        item = {**item, "type": OBJECTIVE_ALIASES[kind.strip().lower()]}
    try:
        return Objective(**item)
    except TypeError as exc:
        raise PlanRequestError(f"objective {index}: {exc} (fields: roi, type, dose_gy, weight, volume_pct)") from None


def validate_parameters(request: PlanRequest) -> None:
    """Raise PlanRequestError naming the first parameter out of its range (ROIs are `validate_rois`' job)."""
    if not isinstance(request.target_roi, str) or not request.target_roi.strip() \
            or len(request.target_roi) > MAX_ROI_NAME:
        raise PlanRequestError(f"target_roi must be an ROI name (at most {MAX_ROI_NAME} characters), "
                               f"not {request.target_roi!r:.80}")
    for name in ("prescription_gy", "spot_spacing_mm", "layer_spacing_mm", "target_margin_mm", "beamlet_spacing_mm"):
        if not _is_number(getattr(request, name)):
            raise PlanRequestError(f"{name} must be a number, not {getattr(request, name)!r}")
    low, high = PRESCRIPTION_RANGE_GY
    if not low <= request.prescription_gy <= high:
        raise PlanRequestError(f"prescription_gy must be between {low:g} and {high:g} Gy, "
                               f"not {request.prescription_gy!r}")
    if isinstance(request.fractions, bool) or not isinstance(request.fractions, int) \
            or not FRACTIONS_RANGE[0] <= request.fractions <= FRACTIONS_RANGE[1]:
        raise PlanRequestError(f"fractions must be a whole number from {FRACTIONS_RANGE[0]} to {FRACTIONS_RANGE[1]}, "
                               f"not {request.fractions!r}")
    if request.gantry_angles_deg is None and request.beam_count is not None \
            and not (isinstance(request.beam_count, int) and 1 <= request.beam_count <= MAX_BEAMS):
        raise PlanRequestError(f"beam_count must be from 1 to {MAX_BEAMS}, not {request.beam_count!r}")
    gantry = request.gantry_angles
    if not 1 <= len(gantry) <= MAX_BEAMS:
        raise PlanRequestError(f"a plan has 1 to {MAX_BEAMS} beams, not {len(gantry)}")
    if len(request.couch_angles) != len(gantry):
        raise PlanRequestError(f"{len(gantry)} gantry angles but {len(request.couch_angles)} couch angles")
    for angle in (*gantry, *request.couch_angles):
        if not (math.isfinite(angle) and -360.0 <= angle <= 360.0):
            raise PlanRequestError(f"beam angles must be finite degrees within ±360, not {angle!r}")
    for name, value, (lo, hi) in (("spot_spacing_mm", request.spot_spacing_mm, SPACING_RANGE_MM),
                                  ("layer_spacing_mm", request.layer_spacing_mm, SPACING_RANGE_MM),
                                  ("target_margin_mm", request.target_margin_mm, MARGIN_RANGE_MM),
                                  ("beamlet_spacing_mm", request.beamlet_spacing_mm, BEAMLET_SPACING_RANGE_MM)):
        if not lo <= value <= hi:
            raise PlanRequestError(f"{name} must be between {lo:g} and {hi:g} mm, not {value!r}")
    if request.scoring_spacing_mm is not None and not SCORING_RANGE_MM[0] <= request.scoring_spacing_mm \
            <= SCORING_RANGE_MM[1]:
        raise PlanRequestError(f"scoring_spacing_mm must be between {SCORING_RANGE_MM[0]:g} and "
                               f"{SCORING_RANGE_MM[1]:g} mm, not {request.scoring_spacing_mm!r}")
    for name, value, (lo, hi) in (("optimization_grid_mm", request.optimization_grid_mm, SCORING_RANGE_MM),
                                  ("final_uncertainty_pct", request.final_uncertainty_pct, UNCERTAINTY_RANGE_PCT)):
        if value is not None and not (_is_number(value) and lo <= value <= hi):
            raise PlanRequestError(f"{name} must be between {lo:g} and {hi:g} (or null), not {value!r:.40}")
    for name, value, most in (("beamlet_primaries", request.beamlet_primaries, MAX_BEAMLET_PRIMARIES),
                              ("final_primaries", request.final_primaries, MAX_FINAL_PRIMARIES)):
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= MIN_PRIMARIES):
            raise PlanRequestError(f"{name} must be a whole number of at least {MIN_PRIMARIES}, not {value!r}")
        if value > most:
            raise PlanRequestError(f"{name} must be at most {most:.0e} (the Monte Carlo has to fit in the plan "
                                   f"job's time limit), not {value:.3g}")
    if request.optimizer not in OPTIMIZERS:
        raise PlanRequestError(f"optimizer {request.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
    if not (isinstance(request.max_iterations, int) and 1 <= request.max_iterations <= 10_000):
        raise PlanRequestError(f"max_iterations must be from 1 to 10000, not {request.max_iterations!r}")
    if request.robustness is not None:
        for name, limit in (("setup_mm", MAX_SETUP_ERROR_MM), ("range_pct", MAX_RANGE_ERROR_PCT)):
            value = getattr(request.robustness, name)
            if not (_is_number(value) and 0.0 <= value <= limit):
                raise PlanRequestError(f"robustness {name} must be between 0 and {limit:g}, not {value!r}")
    if request.objectives is not None:
        _at_most_objectives(len(request.objectives))
    for index, objective in enumerate(request.effective_objectives, start=1):
        if not isinstance(objective.roi, str) or not objective.roi or len(objective.roi) > MAX_ROI_NAME:
            raise PlanRequestError(f"objective {index}: roi must be an ROI name (at most {MAX_ROI_NAME} "
                                   f"characters), not {objective.roi!r:.80}")
        where = f"objective {index} ({objective.type!s:.40} on {objective.roi})"
        if objective.type not in OBJECTIVE_TYPES:
            raise PlanRequestError(f"objective {index}: type {objective.type!r:.40} is not one of "
                                   f"{', '.join(OBJECTIVE_TYPES)}")
        if objective.robust is not None and not isinstance(objective.robust, bool):
            raise PlanRequestError(f"{where}: robust must be true, false or null, not {objective.robust!r:.40}")
        for name in ("dose_gy", "weight") + (("volume_pct",) if objective.volume_pct is not None else ()):
            if not _is_number(getattr(objective, name)):
                raise PlanRequestError(f"{where}: {name} must be a number, not {getattr(objective, name)!r}")
        if not (0.0 <= objective.dose_gy <= 2 * high):
            raise PlanRequestError(f"{where}: dose_gy must be between 0 and {2 * high:g} Gy, not {objective.dose_gy!r}")
        if not objective.weight > 0:
            raise PlanRequestError(f"{where}: weight must be positive, not {objective.weight!r}")
        if objective.type.startswith("DVH"):
            if objective.volume_pct is None:
                raise PlanRequestError(f"{where}: a DVH objective needs volume_pct (0-100)")
            if not 0.0 < objective.volume_pct < 100.0:
                raise PlanRequestError(f"{where}: volume_pct must be between 0 and 100, not {objective.volume_pct!r}")


def validate_rois(request: PlanRequest, contoured: Mapping[str, bool]) -> None:
    """Raise PlanRequestError when an ROI the request names is not in `contoured` ({name: has contours})."""
    available = ", ".join(sorted(contoured)) or "none"
    named = [(request.target_roi, "target")] + [
        (o.roi, f"objective {i} ({o.type} on {o.roi}):") for i, o in enumerate(request.effective_objectives, 1)] + [
        (g.roi, f"goal {i} ({g.metric} on {g.roi}):") for i, g in enumerate(request.goals or (), 1)]
    for roi, what in named:
        if roi not in contoured:
            raise PlanRequestError(f"{what} ROI {roi!r} is not in the structure set (available: {available})")
        if not contoured[roi]:
            raise PlanRequestError(f"{what} ROI {roi!r} has no contours in the structure set")


def objective_conflicts(objectives: tuple, masks: Mapping[str, np.ndarray]) -> list[str]:
    """Notes on objectives no dose can meet together: a minimum dose on one ROI above a maximum on an overlapping one.

    Still a valid request (the optimiser weighs them): the QA summary says it instead of failing the plan.
    """
    # DVH objectives bound part of a volume only: an overlap smaller than that part does not make them conflict.
    lows = [o for o in objectives if o.type in ("DMin", "DUniform")]
    highs = [o for o in objectives if o.type in ("DMax", "DUniform")]
    notes = []
    for low in lows:
        for high in highs:
            if low is high or not low.dose_gy > high.dose_gy:
                continue
            overlap = int(np.count_nonzero(np.asarray(masks[low.roi], bool) & np.asarray(masks[high.roi], bool))) \
                if low.roi in masks and high.roi in masks else 0
            if low.roi == high.roi or overlap:
                where = "the same ROI" if low.roi == high.roi else f"{overlap} voxels of overlap"
                notes.append(f"{low.type} {low.dose_gy:g} Gy on {low.roi} and {high.type} {high.dose_gy:g} Gy on "
                             f"{high.roi} conflict ({where}): the optimiser can meet at most one of them there")
    return notes


def _is_number(value: object) -> bool:
    """A finite int or float that converts to a float (math.isfinite raises OverflowError on an int beyond)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return abs(value) <= sys.float_info.max if isinstance(value, int) else math.isfinite(value)


def json_ready(value: object) -> object:
    """Tuples as lists, recursively (what json.dumps would write, without the round trip)."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value
