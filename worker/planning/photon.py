"""Photon IMRT planning with OpenTPS' CCC engine: a CT, structures and a request in; a photon plan, its dose and QA out.

`plan_photon` mirrors `worker.planning.impt.plan_impt` (same stages, same QA) for
the `photon-ccc` workflow:

1. building plan: OpenTPS' `PhotonPlanDesign` places beamlets (bixels of
   `beamlet_spacing_mm`) over the target's beam's-eye-view projection, with
   margin, for every beam; the isocentre is the target's centre of mass;
2. computing beamlets: OpenTPS' CCC engine in `work_dir/beamlets`
   (`worker.engines.ccc`; never OpenTPS' global workspace) on the CT's
   mass densities (HU converted with OpenTPS' default CT calibration);
3. optimizing: OpenTPS' `IntensityModulationOptimizer` on the request's
   objectives (`FidObjective` metrics), as in OpenTPS'
   simpleOptimizationPhotons example;
4. final dose: the optimised beamlet weights times the beamlet doses of
   every voxel. The engine is deterministic, so this is the dose a new run
   of the engine on the exported plan gives (`compute_plan_dose` does that;
   tests/physics/test_photon_ccc.py checks that both agree).

Angles are IEC 61217 gantry angles (couch 0). OpenTPS' photon code turns the
gantry the other way (see `orthanc_rt.planning.ccc_engine`), so its plan design gets
the mirrored angle and the beamlet coordinates come out in IEC axes.

Doses are whole-plan doses (all fractions) on the dose grid: the CT grid,
or with `scoring_spacing_mm` an isotropic grid of that spacing covering the
CT (`worker.engines.proton_dose.scoring_grid`; densities interpolated onto it). The
engine's cost grows with the voxel count: on OpenTPS' SimpleFantomWithStruct
(100^3 CT voxels of 2 mm, 2 beams, 154 beamlets, 2 cores) the beamlets took
265 s on the CT grid and 16 s on a 4 mm grid, with the same target coverage
(D95 99.1 % and 99.4 % of the prescription). The engine has no machine output
calibration, so the optimiser scales the beamlet weights to the
prescription: the weights are relative fluence (`PhotonPlan.weight_unit`),
not monitor units of a real machine. QA metrics (`orthanc_rt.analysis.dvh_metrics`)
are taken on the final dose with every ROI sampled onto the dose grid by
nearest voxel centre (`worker.planning.impt.mask_on_grid`).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import scipy.sparse as sp
from opentps.core.data import SparseBeamlets
from opentps.core.data.images import ROIMask
from opentps.core.data.plan import FidObjective, PhotonPlanDesign
from opentps.core.processing.planOptimization.planOptimization import (
    IntensityModulationOptimizer,
)
from scipy.ndimage import map_coordinates

from orthanc_rt.dicom.models import CtVolume, DoseGrid, PhotonBeam, PhotonPlan
from orthanc_rt.dicom.uids import derive_uid
from orthanc_rt.errors import PlanRequestError
from orthanc_rt.planning.ccc_engine import Beamlet
from orthanc_rt.planning.request import PlanRequest
from worker.engines.ccc import DensityGrid, compute_beamlets
from worker.engines.mcsquare import ScoringGrid
from worker.engines.proton_dose import default_beam_model, scoring_grid, to_opentps_ct
from worker.planning.impt import (
    OPENTPS_FALLBACK_OPTIMIZER,
    STAGES,
    OptimizerInfo,
    ProgressCallback,
    StageTimes,
    dose_qa,
    mask_on_grid,
)
from worker.planning.impt import validate_request as validate_structures
from worker.planning.optimizer import OPTIMIZER_NAME

logger = logging.getLogger(__name__)

NOMINAL_ENERGY_MV = 6.0  # the engine's Kernels_6MV spectrum


@dataclass
class PhotonPlanResult:
    plan: PhotonPlan  # per-fraction beamlet weights
    dose: DoseGrid  # whole-plan dose of `plan` on the CT grid (Gy)
    optimizer: OptimizerInfo
    beamlet_count: int  # beamlets with a positive weight
    qa: dict[str, dict[str, float]]  # every ROI -> roi_dose_metrics; the target -> target_dose_metrics


def validate_request(request: PlanRequest, structures: dict[str, np.ndarray], ct: CtVolume) -> None:
    """`worker.planning.impt.validate_request`, plus what the photon engine cannot do (couch rotation, robustness)."""
    validate_structures(request, structures, ct)
    if any(angle % 360.0 for angle in request.couch_angles):
        raise PlanRequestError("photon beams with a couch rotation are not supported (couch_angles_deg must be 0)")
    if request.robustness is not None and request.robustness.enabled:
        raise PlanRequestError("robust optimisation is not available for photon plans")


@dataclass
class DesignedPlan:
    """OpenTPS' photon plan as designed (unit weights) and its beamlets in our terms, in OpenTPS' beamlet order."""

    opentps_plan: Any  # opentps PhotonPlan; its planDesign holds the CT, target and objectives
    beamlets: list[Beamlet]
    beam_of: np.ndarray  # index of each beamlet's beam
    isocenter_mm: tuple[float, float, float]


def design_plan(ct: CtVolume, target_mask: np.ndarray, request: PlanRequest) -> DesignedPlan:
    """Stage 1: OpenTPS' PhotonPlanDesign places beamlets over the target (isocentre at its centre of mass)."""
    design = PhotonPlanDesign()
    design.ct = to_opentps_ct(ct)
    design.calibration = _calibration()
    design.targetMask = _roi_mask(request.target_roi, target_mask, scoring_grid(ct, None))
    design.isocenterPosition_mm = None  # the target's centre of mass
    design.gantryAngles = [_opentps_gantry(g) for g in request.gantry_angles]
    design.couchAngles = [0.0] * len(request.gantry_angles)
    design.beamNames = [f"B{k}" for k in range(1, len(request.gantry_angles) + 1)]
    design.xBeamletSpacing_mm = design.yBeamletSpacing_mm = float(request.beamlet_spacing_mm)
    design.targetMargin = float(request.target_margin_mm)
    design.defineTargetMaskAndPrescription(target=design.targetMask, targetPrescription=float(request.prescription_gy))
    opentps_plan = design.buildPlan()
    opentps_plan.numberOfFractionsPlanned = int(request.fractions)
    beamlets, beam_of = _beamlets(opentps_plan, request)
    if not beamlets:
        raise PlanRequestError(f"no beamlet could be placed on target {request.target_roi!r}")
    return DesignedPlan(opentps_plan, beamlets, beam_of, tuple(float(v) for v in design.isocenterPosition_mm))


def plan_photon(ct: CtVolume, structures: dict[str, np.ndarray], request: PlanRequest, *, work_dir: Path,
                threads: int = 0, on_progress: ProgressCallback | None = None) -> PhotonPlanResult:
    """Plan `request` on `ct` (see the module docstring); the engine's files go below `work_dir`."""
    report = on_progress or (lambda stage, fraction: None)
    validate_request(request, structures, ct)
    objectives = request.effective_objectives
    times = StageTimes()

    report(STAGES[0], 0.0)
    started = time.monotonic()
    designed = design_plan(ct, structures[request.target_roi], request)
    opentps_plan, beamlets, beam_of, isocenter = (designed.opentps_plan, designed.beamlets, designed.beam_of,
                                                  designed.isocenter_mm)
    design = opentps_plan.planDesign
    times.building_plan_s = time.monotonic() - started
    report(STAGES[0], 1.0)
    logger.info("photon plan design: %d beamlets in %.1f s", len(beamlets), times.building_plan_s)

    report(STAGES[1], 0.0)
    started = time.monotonic()
    grid = scoring_grid(ct, request.scoring_spacing_mm)
    masks = {name: mask_on_grid(np.asarray(mask, dtype=bool), ct, grid) for name, mask in structures.items()}
    for name in {request.target_roi, *(o.roi for o in objectives)}:
        if not masks[name].any():
            raise PlanRequestError(f"ROI {name!r} has no voxel on the {grid.spacing_mm[0]:g} mm dose grid")
    matrix = compute_beamlets(density_grid(ct, grid), isocenter, beamlets, work_dir=Path(work_dir) / "beamlets",
                              threads=threads, on_progress=lambda done, _: report(STAGES[1], done))
    if matrix.nnz == 0:
        raise PlanRequestError("the CCC engine scored no dose for any beamlet (is the CT empty of matter?)")
    design.beamlets = _opentps_beamlets(matrix, grid, opentps_plan)
    if request.scoring_spacing_mm is not None:
        # PhotonPlanDesign derives the grid size from these (as scoring_grid does); the masks are already on it.
        design.setScoringParameters(scoringSpacing=list(grid.spacing_mm), scoringOrigin=list(grid.origin_mm))
    times.beamlets_s = time.monotonic() - started
    report(STAGES[1], 1.0)

    report(STAGES[2], 0.0)
    started = time.monotonic()
    for objective in objectives:
        roi = _roi_mask(objective.roi, masks[objective.roi], grid)
        design.objectives.addFidObjective(roi, FidObjective.Metrics(objective.type), float(objective.dose_gy),
                                          float(objective.weight), volume=objective.volume_pct)
    # Our optimiser plans IMPT spots only (worker.planning.optimizer): photon beamlets go to OpenTPS' L-BFGS-B.
    method = OPENTPS_FALLBACK_OPTIMIZER if request.optimizer == OPTIMIZER_NAME else request.optimizer
    optimizer = IntensityModulationOptimizer(method=method, plan=opentps_plan, maxiter=request.max_iterations)
    _, history = optimizer.optimize()
    times.optimizing_s = time.monotonic() - started
    report(STAGES[2], 1.0)
    history = [float(v) for v in np.ravel(history)]

    report(STAGES[3], 0.0)
    started = time.monotonic()
    # Whole-plan weight of every beamlet, in the order of `beamlets` (OpenTPS' own plan has dropped the zeros).
    weights = np.asarray(optimizer.weights, dtype=np.float64)
    plan_weights = np.square(weights) if optimizer.xSquared else weights
    plan = _photon_plan(ct, request, isocenter, beamlets, beam_of, plan_weights / request.fractions)
    dose = _dose(matrix, plan_weights, grid, ct.frame_of_reference_uid)
    times.final_dose_s = time.monotonic() - started
    report(STAGES[3], 1.0)

    info = OptimizerInfo.of_run(method, optimizer.niter, history, times)
    return PhotonPlanResult(plan=plan, dose=dose, optimizer=info, beamlet_count=int(np.count_nonzero(plan_weights)),
                            qa=dose_qa(dose, masks, request))


def compute_plan_dose(ct: CtVolume, plan: PhotonPlan, *, work_dir: Path, scoring_spacing_mm: float | None = None,
                      threads: int = 0, on_progress: Callable[[float, str], None] | None = None) -> DoseGrid:
    """The whole-plan dose of `plan` on `ct` (or its `scoring_spacing_mm` grid) by a new run of the engine."""
    isocenters = {tuple(beam.isocenter_mm) for beam in plan.beams}
    if len(isocenters) != 1:
        raise PlanRequestError(f"the beams of a photon plan must share one isocentre, not {sorted(isocenters)}")
    if any(beam.couch_angle_deg % 360.0 for beam in plan.beams):
        raise PlanRequestError("photon beams with a couch rotation are not supported")
    beamlets, weights = [], []
    for beam in plan.beams:
        width, height = beam.beamlet_size_mm
        for x, y, w in zip(beam.beamlet_x_mm, beam.beamlet_y_mm, beam.beamlet_weight):
            if w > 0:
                beamlets.append(Beamlet(float(beam.gantry_angle_deg), float(x), float(y), float(width), float(height)))
                weights.append(float(w))
    if not beamlets:
        raise PlanRequestError(f"plan {plan.sop_instance_uid}: no beamlet has a positive weight")
    grid = scoring_grid(ct, scoring_spacing_mm)
    matrix = compute_beamlets(density_grid(ct, grid), next(iter(isocenters)), beamlets, work_dir=work_dir,
                              threads=threads, on_progress=on_progress)
    return _dose(matrix, np.asarray(weights) * plan.fractions_planned, grid, ct.frame_of_reference_uid)


def density_grid(ct: CtVolume, grid: ScoringGrid | None = None) -> DensityGrid:
    """Mass densities (g/cm3) by OpenTPS' default CT calibration (as its CCC examples convert them).

    On the CT grid, or on `grid` by trilinear interpolation between CT voxel
    centres (the nearest CT voxel beyond the CT's outer centres).
    """
    hu = np.asarray(ct.hu, dtype=np.float64)
    density = np.asarray(_calibration().convertHU2MassDensity(hu), dtype=np.float32).reshape(hu.shape)
    ct_grid = scoring_grid(ct, None)
    if grid is None:
        grid = ct_grid
    elif grid != ct_grid:
        axes = [(o + s * np.arange(n) - co) / cs for o, s, n, co, cs in
                zip(grid.origin_mm, grid.spacing_mm, grid.size_xyz, ct.origin_mm, ct.spacing_mm)]
        kx, ky, kz = axes
        zz, yy, xx = np.meshgrid(kz, ky, kx, indexing="ij")
        density = map_coordinates(density, [zz, yy, xx], order=1, mode="nearest").astype(np.float32)
    return DensityGrid(density=density, origin_mm=tuple(float(v) for v in grid.origin_mm),
                       spacing_mm=tuple(float(v) for v in grid.spacing_mm))


def _calibration():
    return default_beam_model().calibration


def _opentps_gantry(iec_deg: float) -> float:
    """OpenTPS' photon gantry angle that puts the source where IEC angle `iec_deg` does."""
    return float((-iec_deg) % 360.0)


def _roi_mask(name: str, mask_zyx: np.ndarray, grid: ScoringGrid) -> ROIMask:
    return ROIMask(imageArray=np.ascontiguousarray(np.asarray(mask_zyx, dtype=bool).transpose(2, 1, 0)), name=name,
                   origin=tuple(float(v) for v in grid.origin_mm), spacing=tuple(float(v) for v in grid.spacing_mm))


def _beamlets(opentps_plan, request: PlanRequest) -> tuple[list[Beamlet], np.ndarray]:
    """Our beamlets in OpenTPS' beamlet order (the order of its weights), with IEC gantry angles, and their beams."""
    size = float(request.beamlet_spacing_mm)
    result, beam_of = [], []
    for index, (beam, gantry) in enumerate(zip(opentps_plan.beams, request.gantry_angles)):
        for segment in beam.beamSegments:
            for beamlet in segment.beamlets:
                x, y = (float(v) for v in np.ravel(beamlet.XY_mm)[:2])
                result.append(Beamlet(float(gantry), x, y, size, size))
                beam_of.append(index)
    return result, np.asarray(beam_of, dtype=int)


def _opentps_beamlets(matrix: sp.csc_matrix, grid: ScoringGrid, opentps_plan) -> SparseBeamlets:
    """OpenTPS' SparseBeamlets: rows in its voxel order ([x, y, z] Fortran order with x and y reversed)."""
    nx, ny, nz = grid.size_xyz
    z, rest = np.divmod(np.arange(nz * ny * nx), ny * nx)
    y, x = np.divmod(rest, nx)
    opentps_row = (nx - 1 - x) + nx * ((ny - 1 - y) + ny * z)
    # Copies: sort_indices works in place and `matrix` stays in use for the final dose.
    permuted = sp.csc_matrix((matrix.data.copy(), opentps_row[matrix.indices], matrix.indptr.copy()),
                             shape=matrix.shape)
    permuted.sort_indices()
    beamlets = SparseBeamlets()
    beamlets.setUnitaryBeamlets(permuted)
    beamlets.doseOrigin = tuple(float(v) for v in grid.origin_mm)
    beamlets.doseSpacing = tuple(float(v) for v in grid.spacing_mm)
    beamlets.doseGridSize = (nx, ny, nz)
    beamlets._weights = np.asarray(opentps_plan.beamletMUs, dtype=np.float32)  # as OpenTPS' calculator leaves them
    return beamlets


def _dose(matrix: sp.csc_matrix, plan_weights: np.ndarray, grid: ScoringGrid, frame_of_reference_uid: str) -> DoseGrid:
    flat = np.asarray(matrix @ np.asarray(plan_weights, dtype=np.float64), dtype=np.float32)
    return DoseGrid(dose_gy=flat.reshape(tuple(reversed(grid.size_xyz))), origin_mm=tuple(grid.origin_mm),
                    spacing_mm=tuple(grid.spacing_mm), frame_of_reference_uid=frame_of_reference_uid)


def _photon_plan(ct: CtVolume, request: PlanRequest, isocenter: tuple[float, float, float],
                 beamlets: Sequence[Beamlet], beam_of: np.ndarray, weights: np.ndarray) -> PhotonPlan:
    # Placeholder identity derived from the inputs; the job that stores the plan sets its own UIDs.
    key = repr((ct.series_instance_uid, ct.frame_of_reference_uid, request))
    weights = np.asarray(weights, dtype=np.float64)
    beams = []
    for index, gantry in enumerate(request.gantry_angles):
        chosen = np.flatnonzero(beam_of == index)
        beams.append(PhotonBeam(
            number=index + 1, name=f"B{index + 1}", gantry_angle_deg=float(gantry) % 360.0, couch_angle_deg=0.0,
            isocenter_mm=isocenter, beamlet_x_mm=np.array([beamlets[k].x_mm for k in chosen]),
            beamlet_y_mm=np.array([beamlets[k].y_mm for k in chosen]), beamlet_weight=weights[chosen],
            beamlet_size_mm=(float(request.beamlet_spacing_mm),) * 2, nominal_energy_mv=NOMINAL_ENERGY_MV))
    return PhotonPlan(sop_instance_uid=derive_uid("orthanc-rt-photon", key, "plan"),
                      series_instance_uid=derive_uid("orthanc-rt-photon", key, "series"),
                      study_instance_uid=ct.study_instance_uid, frame_of_reference_uid=ct.frame_of_reference_uid,
                      patient_id="", label="IMRT", fractions_planned=int(request.fractions), beams=beams,
                      name=f"IMRT {request.target_roi} {request.prescription_gy:g} Gy"[:64])
