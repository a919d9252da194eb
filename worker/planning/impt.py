"""IMPT planning: a CT, structures and a request in; an optimised ion plan, its dose and QA out.

`plan_impt` runs four stages, each reported through `on_progress(stage, fraction_of_stage)`
(stage names in `STAGES`, which fit `worker.jobs.progress.Progress.enter/within`):

1. building plan: OpenTPS' `ProtonPlanDesign` places spots (ray tracing the
   target, with margin, through the CT's stopping powers) for every beam;
2. computing beamlets: MCsquare in beamlet mode inside `work_dir/beamlets`
   (`worker.engines.beamlets`; never OpenTPS' global workspace). With
   `request.robustness`, the same run also gives MCsquare's reduced set of
   error scenarios (20 with setup and range errors), the target's objectives
   become worst-case (robust) objectives, and `PlanResult.scenario_qa` gives
   the target's D95/D5 in every scenario (beamlet doses);
3. optimizing: our optimiser (`worker.planning.optimizer`, `optimizer` "orthanc-rt", the default) or
   OpenTPS' `IntensityModulationOptimizer` on the request's objectives (`FidObjective` metrics), masks
   resampled to the optimisation grid (`optimization_grid`: 3 mm by default, the beamlets are scored on it);
4. final dose: the optimised OpenTPS plan is converted to our `IonPlan`
   (`worker.engines.plan_convert`) and `worker.engines.proton_dose.compute_dose` computes its
   dose on the final grid (the CT's or `scoring_spacing_mm`) in `work_dir/final`, stopping at
   `final_uncertainty_pct` or `final_primaries`: the plan that is exported and the dose that is
   reported are the same object.

Doses are whole-plan doses (all fractions, Gy), like every DoseGrid. The
prescription is the plan dose too. QA metrics (`orthanc_rt.analysis.dvh_metrics`) are
taken on the final dose grid with each ROI resampled to it by nearest voxel
centre. `work_dir` keeps MCsquare's inputs and outputs (the beamlet files are
tens of MB, 20x that for robust plans); the caller removes it.
"""
from __future__ import annotations

import logging
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
from opentps.core.data.images import ROIMask
from opentps.core.data.plan import FidObjective, ProtonPlan
from opentps.core.data.plan._protonPlanDesign import ProtonPlanDesign
from opentps.core.processing.planOptimization.planOptimization import (
    IntensityModulationOptimizer,
)

from orthanc_rt.analysis.dvh_metrics import roi_dose_metrics, target_dose_metrics
from orthanc_rt.analysis.goals import evaluate_goals
from orthanc_rt.dicom.models import CtVolume, DoseGrid, IonPlan
from orthanc_rt.dicom.uids import derive_uid
from orthanc_rt.errors import PlanRequestError
from orthanc_rt.planning.request import PlanRequest, objective_conflicts, validate_parameters, validate_rois
from worker.engines import mcsquare
from worker.engines.beamlets import BeamletRunner, ScenarioErrors, local_beamlets
from worker.engines.mcsquare import ScoringGrid
from worker.engines.plan_convert import from_opentps_plan
from worker.engines.proton_dose import (
    compute_dose,
    compute_dose_to_uncertainty,
    default_beam_model,
    scoring_grid,
    to_opentps_ct,
)
from worker.planning import _spot_lookup
from worker.planning.optimizer import (
    OPTIMIZER_NAME,
    DoseObjective,
    ObjectiveFunction,
    initial_weights,
    optimize_weights,
)

logger = logging.getLogger(__name__)
_spot_lookup.install()  # placing a 7,000-spot plan's spots: 24 s -> 5-7 s (see the module)

# OpenTPS' postProcess threshold (thresholdSpotRemoval): spots below it (MU per fraction) leave the plan.
SPOT_REMOVAL_MU = 1e-6
# What photon plans use when they ask for ours: it optimises IMPT spots only.
OPENTPS_FALLBACK_OPTIMIZER = "Scipy_L-BFGS-B"

STAGES = ("building plan", "computing beamlets", "optimizing", "final dose")
ProgressCallback = Callable[[str, float], None]


@dataclass
class StageTimes:
    building_plan_s: float = 0.0
    beamlets_s: float = 0.0
    optimizing_s: float = 0.0
    final_dose_s: float = 0.0


@dataclass
class OptimizerInfo:
    method: str
    iterations: int
    objective_initial: float
    objective_final: float
    objective_history: list[float]
    times: StageTimes = field(default_factory=StageTimes)

    @classmethod
    def of_run(cls, method: str, iterations: int, history: list[float], times: StageTimes) -> "OptimizerInfo":
        """From an OpenTPS optimiser's run: its objective per iteration (NaN ends when it made none)."""
        return cls(method=method, iterations=int(iterations),
                   objective_initial=history[0] if history else float("nan"),
                   objective_final=history[-1] if history else float("nan"), objective_history=history, times=times)


@dataclass
class PlanResult:
    plan: IonPlan  # per-fraction MU; pass its beams to build_ion_plan
    dose: DoseGrid  # final MC dose of `plan` (whole plan, Gy)
    optimizer: OptimizerInfo
    spot_count: int
    layer_count: int
    qa: dict[str, dict[str, float]]  # every ROI -> roi_dose_metrics; the target -> target_dose_metrics
    optimizer_dose: DoseGrid | None = None  # beamlet-sum dose the optimiser saw (on the optimisation grid)
    # Robust plans: the target's D95/D5 (Gy) in each error scenario (beamlet doses), and the worst of each.
    scenario_qa: dict[str, float | list[float]] | None = None
    # MCsquare's uncertainty estimate of the final dose (mcsquare.STAT_UNCERTAINTY_DEFINITION), %; None if not logged
    final_uncertainty_pct: float | None = None
    goals: list[dict] = field(default_factory=list)  # analysis.goals results on the final dose (summary)
    notes: list[str] = field(default_factory=list)  # e.g. conflicting objectives (request.objective_conflicts)


def validate_request(request: PlanRequest, structures: dict[str, np.ndarray], ct: CtVolume) -> None:
    """Raise PlanRequestError naming the first thing wrong with `request` for these masks on `ct`'s grid."""
    validate_rois(request, {name: True for name in structures})
    validate_parameters(request)
    for name, mask in structures.items():
        if np.shape(mask) != ct.shape_zyx:
            raise PlanRequestError(f"ROI {name!r}: mask shape {np.shape(mask)} is not the CT's {ct.shape_zyx}")
    for name in {request.target_roi, *(o.roi for o in request.effective_objectives)}:
        if not np.any(structures[name]):
            raise PlanRequestError(f"ROI {name!r} is empty on the CT grid")


def plan_impt(ct: CtVolume, structures: dict[str, np.ndarray], request: PlanRequest, *, work_dir: Path,
              threads: int = 0, on_progress: ProgressCallback | None = None,
              beamlet_runner: BeamletRunner | None = None) -> PlanResult:
    """Plan `request` on `ct` (see the module docstring); MCsquare files go below `work_dir`.

    `beamlet_runner` computes stage 2 (default: `worker.engines.beamlets.local_beamlets`, one MCsquare run here;
    `worker.engines.beamlet_fanout` spreads it over the RQ workers).
    """
    report = on_progress or (lambda stage, fraction: None)
    validate_request(request, structures, ct)
    work_dir = Path(work_dir)
    model = default_beam_model()
    times = StageTimes()

    report(STAGES[0], 0.0)
    started = time.monotonic()
    final_grid = scoring_grid(ct, request.scoring_spacing_mm)
    grid = optimization_grid(ct, request)  # beamlets and optimiser
    opentps_ct = to_opentps_ct(ct)
    target_ct = _roi_mask(request.target_roi, structures[request.target_roi], ct.origin_mm, ct.spacing_mm)
    design = ProtonPlanDesign()
    design.ct = opentps_ct
    design.calibration = model.calibration
    design.gantryAngles = list(request.gantry_angles)
    design.couchAngles = list(request.couch_angles)
    design.beamNames = [f"B{k}" for k in range(1, len(request.gantry_angles) + 1)]
    design.spotSpacing = float(request.spot_spacing_mm)
    design.layerSpacing = float(request.layer_spacing_mm)
    design.targetMargin = float(request.target_margin_mm)
    design.setScoringParameters(scoringGridSize=np.array(grid.size_xyz), scoringSpacing=list(grid.spacing_mm),
                                scoringOrigin=list(grid.origin_mm))
    design.defineTargetMaskAndPrescription(target=target_ct, targetPrescription=float(request.prescription_gy))
    plan = design.buildPlan()
    plan.numberOfFractionsPlanned = int(request.fractions)
    if plan.numberOfSpots == 0:
        raise PlanRequestError(f"no spot could be placed on target {request.target_roi!r} (outside the CT, or "
                               "beyond the beam model's energies?)")
    times.building_plan_s = time.monotonic() - started
    require_memory_for_beamlets(plan.numberOfSpots, grid, 1 + (20 if request.robustness is not None
                                                              and request.robustness.enabled else 0))
    report(STAGES[0], 1.0)
    logger.info("plan design: %d spots in %.1f s", plan.numberOfSpots, times.building_plan_s)

    report(STAGES[1], 0.0)
    started = time.monotonic()
    robust = request.robustness is not None and request.robustness.enabled
    errors = ScenarioErrors(float(request.robustness.setup_mm), float(request.robustness.range_pct)) if robust \
        else None
    design.beamlets, scenarios = (beamlet_runner or local_beamlets)(
        opentps_ct, plan, model, grid, primaries=request.beamlet_primaries, work_dir=work_dir / "beamlets",
        threads=threads, on_progress=lambda done, _: report(STAGES[1], done), errors=errors)
    if robust:
        # What OpenTPS' optimiser reads of a robust design: the strategy, the errors and the scenario beamlets.
        design.robustness.selectionStrategy = design.robustness.Strategies.REDUCED_SET
        design.robustness.setupSystematicError = [errors.setup_mm] * 3
        design.robustness.setupRandomError = [0.0, 0.0, 0.0]
        design.robustness.rangeSystematicError = errors.range_pct
        design.robustness.scenarios = scenarios
        # Kept for the evaluation below: the optimiser crops these matrices to the ROIs and unloads them.
        scenario_matrices = [scenario.toSparseMatrix() for scenario in scenarios]
        design.robustness.numScenarios = len(scenarios)
    else:
        scenario_matrices = []
    times.beamlets_s = time.monotonic() - started
    report(STAGES[1], 1.0)

    report(STAGES[2], 0.0)
    started = time.monotonic()
    grid_masks = {name: mask_on_grid(np.asarray(mask, dtype=bool), ct, grid)
                  for name, mask in structures.items()}
    optimizer = None
    if request.optimizer == OPTIMIZER_NAME:
        matrix = design.beamlets.toSparseMatrix()  # once: OpenTPS reloads it from disk when unloaded
        weights, iterations, history = _optimize_ours(plan, matrix, scenario_matrices, grid_masks, request,
                                                      lambda f: report(STAGES[2], f))
        optimizer_dose_zyx = _beamlet_dose(matrix, weights, grid)
    else:
        for objective in request.effective_objectives:
            roi = _roi_mask(objective.roi, grid_masks[objective.roi], grid.origin_mm, grid.spacing_mm)
            design.objectives.addFidObjective(roi, FidObjective.Metrics(objective.type), float(objective.dose_gy),
                                              float(objective.weight), volume=objective.volume_pct,
                                              robust=_is_robust(objective, request))
        optimizer = IntensityModulationOptimizer(method=request.optimizer, plan=plan,
                                                 maxiter=request.max_iterations)
        with _iterations_reported(lambda done: report(STAGES[2], min(done / request.max_iterations, 0.99))):
            optimizer_dose_image, history = optimizer.optimize()
        iterations = optimizer.niter
        history = [float(v) for v in np.ravel(history)]
        optimizer_dose_zyx = optimizer_dose_image.imageArray.transpose(2, 1, 0)
    times.optimizing_s = time.monotonic() - started
    report(STAGES[2], 1.0)

    report(STAGES[3], 0.0)
    started = time.monotonic()
    ion_plan = _ion_plan(plan, ct, request)
    final_dir, on_final = work_dir / "final", lambda done, _: report(STAGES[3], done)
    if request.final_uncertainty_pct:
        final = compute_dose_to_uncertainty(ct, ion_plan, uncertainty_pct=request.final_uncertainty_pct,
                                            max_primaries=request.final_primaries, work_dir=final_dir,
                                            scoring_spacing_mm=request.scoring_spacing_mm, threads=threads,
                                            on_progress=on_final)
        dose, uncertainty = final.dose, final.uncertainty_pct
    else:
        dose = compute_dose(ct, ion_plan, primaries=request.final_primaries, work_dir=final_dir,
                            scoring_spacing_mm=request.scoring_spacing_mm, threads=threads, on_progress=on_final)
        uncertainty = mcsquare.stat_uncertainty_percent(mcsquare.JobFolder.at(final_dir))
    times.final_dose_s = time.monotonic() - started
    report(STAGES[3], 1.0)

    optimizer_dose = DoseGrid(dose_gy=np.ascontiguousarray(optimizer_dose_zyx, dtype=np.float32),
                              origin_mm=grid.origin_mm, spacing_mm=grid.spacing_mm,
                              frame_of_reference_uid=ct.frame_of_reference_uid)
    # Every ROI, not only those with objectives: the QA reports them all, on the final dose's grid.
    final_masks = grid_masks if final_grid == grid else {
        name: mask_on_grid(np.asarray(mask, dtype=bool), ct, final_grid) for name, mask in structures.items()}
    qa = dose_qa(dose, final_masks, request)
    goals = [result.summary() for result in evaluate_goals(request.goals or (), [dose.dose_gy], final_masks,
                                                          prescription_gy=request.prescription_gy,
                                                          require_rois=False)]
    notes = objective_conflicts(request.effective_objectives, final_masks)
    scenario_qa = None
    if scenario_matrices:
        # Plan dose of each scenario: MU x fractions (ours) or their square roots (OpenTPS' xSquared).
        plan_mu = weights if optimizer is None else np.square(np.asarray(optimizer.weights, dtype=np.float64))
        target = grid_masks[request.target_roi]
        metrics = [roi_dose_metrics(_beamlet_dose(matrix, plan_mu, grid), target) for matrix in scenario_matrices]
        scenario_qa = {"D95": [m["D95"] for m in metrics], "D5": [m["D5"] for m in metrics],
                       "worst_D95": min(m["D95"] for m in metrics), "worst_D5": max(m["D5"] for m in metrics)}
    info = OptimizerInfo.of_run(request.optimizer if optimizer is None else optimizer.method, iterations, history,
                                times)
    return PlanResult(plan=ion_plan, dose=dose, optimizer=info, spot_count=ion_plan.spot_count,
                      layer_count=sum(len(b.layers) for b in ion_plan.beams), qa=qa, optimizer_dose=optimizer_dose,
                      scenario_qa=scenario_qa, final_uncertainty_pct=uncertainty, goals=goals, notes=notes)


def _is_robust(objective, request: PlanRequest) -> bool:
    """Whether `objective` counts in its worst error scenario: its own flag, by default the target's (robust plans)."""
    if request.robustness is None or not request.robustness.enabled:
        return False
    return objective.robust if objective.robust is not None else objective.roi == request.target_roi


def _optimize_ours(plan: ProtonPlan, matrix, scenario_matrices: list, grid_masks: dict[str, np.ndarray],
                   request: PlanRequest, on_fraction: Callable[[float], None]) -> tuple[np.ndarray, int, list[float]]:
    """Our optimiser (worker.planning.optimizer) on the request's objectives; sets the plan's MUs.

    `scenario_matrices` (robust plans): the error scenarios' beamlets, where the robust objectives count.

    Returns the weights (MU x fractions, one per beamlet column), the iterations and the objective history.
    """
    objectives = []
    for objective in request.effective_objectives:
        voxels = np.flatnonzero(_beamlet_rows(grid_masks[objective.roi]))
        objectives.append(DoseObjective(objective.type, voxels, float(objective.dose_gy), float(objective.weight),
                                        objective.volume_pct, robust=_is_robust(objective, request),
                                        roi=objective.roi))
    function = ObjectiveFunction(matrix, objectives, scenario_matrices)
    result = optimize_weights(function, initial_weights(function, float(request.prescription_gy)),
                              max_iterations=request.max_iterations,
                              on_iteration=lambda done: on_fraction(min(done / request.max_iterations, 0.99)))
    logger.info("optimiser %s: %d iterations, %d evaluations, %.1f s, objective %.4g -> %.4g (%s)", OPTIMIZER_NAME,
                result.iterations, result.evaluations, result.seconds, result.history[0], result.history[-1],
                result.message)
    # What OpenTPS' postProcess does with its weights: MU per fraction, spots below SPOT_REMOVAL_MU dropped.
    plan.spotMUs = (result.weights / plan.numberOfFractionsPlanned).astype(np.float32)
    plan.simplify(threshold=SPOT_REMOVAL_MU)
    return result.weights, result.iterations, result.history


def _beamlet_rows(mask_zyx: np.ndarray) -> np.ndarray:
    """A [z, y, x] mask on the beamlet grid as a flag per beamlet-matrix row (the inverse of `_beamlet_dose`)."""
    return np.ravel(np.flip(np.asarray(mask_zyx, dtype=bool).transpose(2, 1, 0), (0, 1)), order="F")


# OpenTPS' scipy solvers log "Iteration <n> of Scipy-<method>" once per iteration: the optimiser's only progress.
_SOLVER_LOGGER = "opentps.core.processing.planOptimization.solvers.scipyOpt"
_ITERATION = re.compile(r"^Iteration (\d+) of ")


class _IterationHandler(logging.Handler):
    def __init__(self, on_iteration: Callable[[int], None]):
        super().__init__(logging.DEBUG)
        self.on_iteration = on_iteration

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:  # what the solver warns about still reaches the worker's log
            logging.getLogger("opentps").handle(record)
            return
        match = _ITERATION.match(record.getMessage())
        if match:
            self.on_iteration(int(match.group(1)) + 1)


@contextmanager
def _iterations_reported(on_iteration: Callable[[int], None]) -> Iterator[None]:
    """Call `on_iteration(iterations done)` while OpenTPS' optimiser runs (its INFO records, kept from the root)."""
    solver_log = logging.getLogger(_SOLVER_LOGGER)
    handler = _IterationHandler(on_iteration)
    saved = solver_log.level, solver_log.propagate
    solver_log.addHandler(handler)
    solver_log.setLevel(logging.INFO)
    solver_log.propagate = False  # two INFO lines per iteration would flood the worker's log
    try:
        yield
    finally:
        solver_log.removeHandler(handler)
        solver_log.setLevel(saved[0])
        solver_log.propagate = saved[1]


def dose_qa(dose: DoseGrid, masks: dict[str, np.ndarray], request: PlanRequest) -> dict[str, dict[str, float]]:
    """Every ROI's dose metrics on the final dose (masks on its grid); the target's with coverage and indices."""
    qa = {name: roi_dose_metrics(dose.dose_gy, mask) for name, mask in masks.items()}
    qa[request.target_roi] = target_dose_metrics(dose.dose_gy, masks[request.target_roi], request.prescription_gy)
    return qa


def _beamlet_dose(matrix, weights: np.ndarray, grid: ScoringGrid) -> np.ndarray:
    """Beamlets x weights as a [z, y, x] array; MCsquare's voxel order, as OpenTPS reads it (x and y reversed)."""
    flat = np.asarray(matrix @ weights, dtype=np.float32)
    xyz = np.flip(np.reshape(flat, grid.size_xyz, order="F"), (0, 1))
    return np.ascontiguousarray(xyz.transpose(2, 1, 0))


def _ion_plan(plan: ProtonPlan, ct: CtVolume, request: PlanRequest) -> IonPlan:
    # Placeholder identity derived from the inputs; the job that stores the plan sets its own UIDs.
    key = repr((ct.series_instance_uid, ct.frame_of_reference_uid, request))
    return from_opentps_plan(plan, sop_instance_uid=derive_uid("orthanc-rt-impt", key, "plan"),
                             series_instance_uid=derive_uid("orthanc-rt-impt", key, "series"),
                             study_instance_uid=ct.study_instance_uid,
                             frame_of_reference_uid=ct.frame_of_reference_uid, label="IMPT",
                             name=f"IMPT {request.target_roi} {request.prescription_gy:g} Gy"[:64])


def _roi_mask(name: str, mask_zyx: np.ndarray, origin: Sequence[float], spacing: Sequence[float]) -> ROIMask:
    return ROIMask(imageArray=np.ascontiguousarray(np.asarray(mask_zyx, dtype=bool).transpose(2, 1, 0)), name=name,
                   origin=tuple(float(v) for v in origin), spacing=tuple(float(v) for v in spacing))


# Non-zeros of one spot's beamlet on a 3 mm grid at MCsquare's sparse threshold, and how they grow on finer grids
# (bench/planning_scale.py, pelvis phantom, 1,211 spots: 7,130 per spot at 3 mm, 16,100 at 2 mm, so about
# 1/spacing²: a beamlet is thin, its cross-section is what the grid resolves); the bytes each costs while
# OpenTPS holds the matrix (float32 value + int32 row index: 8, measured) twice (the copy the optimiser crops
# to the ROIs).
NONZEROS_PER_SPOT_3MM = 7_100
NONZEROS_SPACING_EXPONENT = 2.0
BYTES_PER_NONZERO = 16
MEMORY_SHARE = 0.8  # of what the machine has available: the rest is for the CT, the masks, the worker itself


def beamlet_memory_bytes(spots: int, grid: ScoringGrid, scenarios: int = 1) -> float:
    """What the beamlet matrices of `spots` on `grid` will hold in memory (bytes), estimated before computing."""
    spacing = float(np.prod(grid.spacing_mm)) ** (1.0 / 3.0)
    return spots * scenarios * NONZEROS_PER_SPOT_3MM * (3.0 / spacing) ** NONZEROS_SPACING_EXPONENT \
        * BYTES_PER_NONZERO


def require_memory_for_beamlets(spots: int, grid: ScoringGrid, scenarios: int = 1,
                                available: float | None = None) -> None:
    """Refuse (PlanRequestError with the estimate and the remedy) a plan whose beamlets cannot fit in memory."""
    available = _available_memory_bytes() if available is None else available
    needed = beamlet_memory_bytes(spots, grid, scenarios)
    if available and needed > MEMORY_SHARE * available:
        raise PlanRequestError(
            f"the beamlets of {spots} spots{f' x {scenarios} scenarios' if scenarios > 1 else ''} on a "
            f"{'x'.join(f'{s:g}' for s in grid.spacing_mm)} mm grid would need about {needed / 1e9:.1f} GB, more than "
            f"the {MEMORY_SHARE * available / 1e9:.1f} GB this worker can give them: use a coarser "
            "optimization_grid_mm, a larger spot_spacing_mm or layer_spacing_mm, or a smaller target_margin_mm")


def _available_memory_bytes() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024.0
    except OSError:
        pass
    return None


def optimization_grid(ct: CtVolume, request: PlanRequest) -> ScoringGrid:
    """The grid of the beamlets and the optimiser: `optimization_grid_mm` unless the final dose's grid is as coarse.

    A coarser grid cuts the beamlet matrix (voxels x spots) and every optimiser iteration by the ratio of voxel
    counts; the final dose, on the fine grid, is the one reported (docs/planning.md#speed-levers).
    """
    final = scoring_grid(ct, request.scoring_spacing_mm)
    if request.optimization_grid_mm is None:
        return final
    coarse = scoring_grid(ct, request.optimization_grid_mm)
    return coarse if np.prod(coarse.size_xyz) < np.prod(final.size_xyz) else final


def mask_on_grid(mask_zyx: np.ndarray, ct: CtVolume, grid: ScoringGrid) -> np.ndarray:
    """`mask_zyx` (on the CT grid) sampled at the centres of `grid`'s voxels (nearest CT voxel)."""
    index = []
    for axis, (origin, spacing, count) in enumerate(zip(grid.origin_mm, grid.spacing_mm, grid.size_xyz)):
        centres = origin + spacing * np.arange(count)
        k = np.rint((centres - ct.origin_mm[axis]) / ct.spacing_mm[axis]).astype(int)
        index.append(k)
    kx, ky, kz = index
    nz, ny, nx = mask_zyx.shape
    inside = (np.clip(kz, 0, nz - 1) == kz)[:, None, None] & (np.clip(ky, 0, ny - 1) == ky)[None, :, None] \
        & (np.clip(kx, 0, nx - 1) == kx)[None, None, :]
    sampled = mask_zyx[np.ix_(np.clip(kz, 0, nz - 1), np.clip(ky, 0, ny - 1), np.clip(kx, 0, nx - 1))]
    return sampled & inside
