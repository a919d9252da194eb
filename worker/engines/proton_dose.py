"""The dose of an ion plan on a CT: our plain-data models in, MCsquare (via OpenTPS) in between, a DoseGrid out.

`compute_dose` is the worker's one entry point. It validates the plan
against the beam model before anything runs, converts `CtVolume`/`IonPlan`
to OpenTPS objects, lets `worker.engines.mcsquare` write and run one MCsquare
simulation inside the caller's `work_dir` (one folder per job, so concurrent
jobs never share files and no dose is ever read from OpenTPS' global
workspace: see that module), and converts the result back.

Conventions, each checked by tests/physics/test_mcsquare_range.py:

- Geometry. `CtVolume.hu` is [z, y, x]; OpenTPS images are [x, y, z] with
  `origin` the centre of voxel [0, 0, 0] in DICOM patient coordinates, which
  is also our `origin_mm`. OpenTPS' `mcsquareIO` writes the CT into
  MCsquare's frame (whose y axis is DICOM's -y) and reads the dose back out
  of it; the returned DoseGrid is in DICOM patient coordinates. Spot (x, y) are IEC beam-limiting-device
  coordinates at the isocentre: at gantry 0 / couch 0 on a head-first-supine
  patient, spot x is patient x, spot y is patient z, and the beam travels
  from anterior to posterior (DICOM -y to +y). The patient position is not
  part of our models: every CT is taken as HFS, as OpenTPS does.
- Units and fractions. MCsquare scores dose to water per simulated primary
  in eV/g. The plan delivers sum(MU x protons-per-MU(E)) protons per
  fraction, protons-per-MU interpolated in the beam model (BDL) as OpenTPS'
  `BDL.computeMU2Protons` does; the dose per fraction is that times
  1.602e-16 Gy per eV/g. Like OpenTPS' `MCsquareDoseCalculator._importDose`,
  we multiply by `numberOfFractionsPlanned`, so the DoseGrid is the dose of
  the whole plan (RTDOSE DoseSummationType PLAN), in Gy.
- Scoring grid. Without `scoring_spacing_mm` the dose is on the CT grid.
  With it, on an isotropic grid of that spacing covering the CT (whole
  voxels, centred in the CT's extent).
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import math
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import opentps.core.processing.doseCalculation.protons.MCsquare.BDL as opentps_bdls
import opentps.core.processing.doseCalculation.protons.MCsquare.Scanners as opentps_calibrations
from opentps.core.data.CTCalibrations import AbstractCTCalibration
from opentps.core.data.images import CTImage
from opentps.core.data.MCsquare import BDL
from opentps.core.data.plan import PlanProtonBeam, PlanProtonLayer, ProtonPlan
from opentps.core.data.plan import RangeShifter as OpenTpsRangeShifter
from opentps.core.io import mcsquareIO
from opentps.core.io.scannerReader import readScanner

from orthanc_rt.analysis.let import LET_DOSE_THRESHOLD_FRACTION, restrict_let
from orthanc_rt.dicom.models import CtVolume, DoseGrid, EnergyLayer, IonBeam, IonPlan, LetGrid
from orthanc_rt.errors import DicomInputError, DoseEngineError
from orthanc_rt.settings import from_environment
from worker.engines import mcsquare
from worker.engines.mcsquare import ProgressCallback, ScoringGrid

__all__ = ["BeamModel", "DoseEngineError", "UncertainDose", "compute_dose", "compute_dose_and_let",
           "compute_dose_to_uncertainty", "default_beam_model",
           "delivered_protons", "to_opentps_ct", "to_opentps_plan", "scoring_grid"]

logger = logging.getLogger(__name__)

GY_PER_EV_PER_G = 1.602176634e-19 * 1000.0  # J/eV x g/kg
_SCAN_MODES = ("MODULATED", "MODULATED_SPEC")  # MODULATED_SPEC only adds a nominal spot size, which the BDL sets
# Share of compute_dose's progress given to the Monte Carlo run; writing inputs and reading the dose share the rest.
_MC_START, _MC_SHARE = 0.05, 0.90
# compute_dose_to_uncertainty: the pilot run (its uncertainty sizes the rest), the pilot's share of the progress,
# the runs at most and the smallest top-up. No margin on what the 1 / sqrt(n) law asks for: the pilot's estimate
# held (6,945 spots: 12.8 % at 2e5 predicted 1.83 % at 9.8e6 more, the run reached 1.84 %), a 5 % margin cost 18 s
# of a 9-minute plan, and a run landing just short of the goal is topped up.
PILOT_PRIMARIES = 200_000
# Small, so that the job's ETA, taken from the stage's rate, is about right once the pilot is done: at prostate
# size the pilot is 1.4 % of the primaries (with 10 %, the ETA read 90 s where 380 s remained).
_PILOT_SHARE = 0.02
MAX_RUNS = 4
MIN_TOP_UP = 50_000  # a run costs a few seconds of start-up: not worth fewer primaries


@dataclass(frozen=True)
class BeamModel:
    """The machine description MCsquare simulates: beam data library and CT calibration."""

    bdl: BDL
    calibration: AbstractCTCalibration
    bdl_path: str
    calibration_path: str

    @property
    def energy_range_mev(self) -> tuple[float, float]:
        return float(np.min(self.bdl.nominalEnergy)), float(np.max(self.bdl.nominalEnergy))

    @property
    def range_shifter_ids(self) -> list[str]:
        return [rs.ID for rs in self.bdl.rangeShifters]

    def protons_per_mu(self, energy_mev: float) -> float:
        return float(self.bdl.computeMU2Protons(energy_mev))


# What OpenTPS 2.0.0 itself defaults to (DoseCalculationConfig), taken from the installed package: OpenTPS's
# per-user ~/.config/openTPS records absolute paths into whichever virtualenv first ran it, and outlives it.
_OPENTPS_BDL = Path(opentps_bdls.__path__[0]) / "BDL_default_DN_RangeShifter.txt"
_OPENTPS_CALIBRATION = Path(opentps_calibrations.__path__[0]) / "UCL_Toshiba"


@functools.lru_cache(maxsize=1)
def default_beam_model() -> BeamModel:
    """The BDL and CT calibration this worker is configured with (ORTHANC_RT_BEAM_MODEL,
    ORTHANC_RT_CT_CALIBRATION; unset: OpenTPS's own), read once per process."""
    bdl = Path(from_environment("beam_model") or _OPENTPS_BDL)
    calibration = Path(from_environment("ct_calibration") or _OPENTPS_CALIBRATION)
    if not bdl.is_file():
        raise DoseEngineError(f"the beam model (BDL) {bdl} is not a file (ORTHANC_RT_BEAM_MODEL)")
    if not calibration.is_dir():
        raise DoseEngineError(f"the CT calibration {calibration} is not a folder (ORTHANC_RT_CT_CALIBRATION)")
    return BeamModel(bdl=mcsquareIO.readBDL(str(bdl)), calibration=readScanner(str(calibration)),
                     bdl_path=str(bdl), calibration_path=str(calibration))


def compute_dose(ct: CtVolume, plan: IonPlan, *, primaries: int, work_dir: Path,
                 scoring_spacing_mm: float | None = None, threads: int = 0,
                 on_progress: ProgressCallback | None = None, density_scale: float = 1.0) -> DoseGrid:
    """The whole-plan dose (all planned fractions, Gy) of `plan` on `ct`, by MCsquare.

    Everything MCsquare needs and writes goes into `work_dir` (created if
    missing; the caller removes it). `threads=0` lets MCsquare use every core
    it may run on. `on_progress(fraction, stage)` is called from this thread
    while MCsquare runs. `density_scale` scales every density MCsquare sees
    (ranges by its inverse: a range-error scenario). Raises DicomInputError for plan content the engine
    cannot simulate and DoseEngineError when MCsquare fails.
    """
    dose, _ = _simulate(ct, plan, primaries=primaries, work_dir=work_dir, scoring_spacing_mm=scoring_spacing_mm,
                        threads=threads, on_progress=on_progress, let=False, density_scale=density_scale)
    return dose


@dataclass(frozen=True)
class UncertainDose:
    """A dose computed to a statistical uncertainty, with what it took."""

    dose: DoseGrid
    uncertainty_pct: float | None  # mcsquare.STAT_UNCERTAINTY_DEFINITION, of the combined runs
    primaries: int
    runs: int


def compute_dose_to_uncertainty(ct: CtVolume, plan: IonPlan, *, uncertainty_pct: float, max_primaries: int,
                                work_dir: Path, scoring_spacing_mm: float | None = None, threads: int = 0,
                                on_progress: ProgressCallback | None = None) -> UncertainDose:
    """`compute_dose` run until MCsquare's uncertainty estimate reaches `uncertainty_pct`, or `max_primaries`.

    Not MCsquare's own Stat_uncertainty mode: at clinical size it is pathologically slow (a 5,544-spot plan, one
    thread: 3e5 primaries took 16 s as one run, and had not finished after 14 min in that mode, which stops after
    each small batch to estimate). Instead a pilot run of PILOT_PRIMARIES measures the uncertainty, which falls as
    1 / sqrt(primaries); a run with its own random seed simulates the rest the goal needs, and another tops up if
    the estimate left it short (at most MAX_RUNS in all). The doses per primary are averaged weighted by their
    primaries; the combined uncertainty is sqrt(sum (n_k u_k)²) / sum n_k, each run's u its own estimate (all
    estimate the relative standard deviation of the same mean dose).
    """
    if not uncertainty_pct > 0:
        raise ValueError(f"uncertainty_pct must be positive, not {uncertainty_pct}")
    report = on_progress or (lambda fraction, stage: None)
    cap = int(max_primaries)
    runs: list[tuple[int, DoseGrid, float | None]] = []
    total, reached, shown = 0, None, 0.0
    while len(runs) < MAX_RUNS:
        if not runs:
            primaries, start, label = min(cap, PILOT_PRIMARIES), 0.0, "pilot run: "
        else:
            needed = int(math.ceil(total * (reached / uncertainty_pct) ** 2))
            primaries = min(max(needed - total, MIN_TOP_UP), cap - total)
            # From here on, progress is the share of the primaries (the pilot's share was only a guess).
            start, label = max(shown, total / (total + primaries)), ""
            logger.info("final dose: %d primaries reached %.2f %%; %d more for %.2f %% (cap %d)",
                        total, reached, primaries, uncertainty_pct, cap)
        share = _PILOT_SHARE if not runs else 1.0 - start

        def on_run(done: float, stage: str, start: float = start, share: float = share, label: str = label) -> None:
            nonlocal shown
            shown = max(shown, start + share * done)
            report(shown, label + stage)

        dose, run_reached = _seeded_run(ct, plan, primaries, work_dir, scoring_spacing_mm, threads, on_run)
        runs.append((primaries, dose, run_reached))
        total += primaries
        reached = None if any(u is None for _, _, u in runs) else \
            math.sqrt(sum((n * u) ** 2 for n, _, u in runs)) / total
        if reached is None or reached <= uncertainty_pct or total >= cap:
            break
    combined = sum(n * d.dose_gy.astype(np.float64) for n, d, _ in runs) / total
    report(1.0, "dose computed")
    return UncertainDose(dataclasses.replace(runs[0][1], dose_gy=combined.astype(np.float32)), reached, total,
                         len(runs))


def _seeded_run(ct: CtVolume, plan: IonPlan, primaries: int, work_dir: Path, scoring_spacing_mm: float | None,
                threads: int, on_progress: ProgressCallback) -> tuple[DoseGrid, float | None]:
    # An explicit seed per run: MCsquare's default (0) seeds from the clock, and two runs that start within the
    # same second would simulate the same histories, which averaging would count twice.
    seed = secrets.randbelow(2**31 - 2) + 1
    dose, _ = _simulate(ct, plan, primaries=primaries, work_dir=work_dir, scoring_spacing_mm=scoring_spacing_mm,
                        threads=threads, on_progress=on_progress, let=False, extra_config={"RNG_Seed": seed})
    return dose, mcsquare.stat_uncertainty_percent(mcsquare.JobFolder.at(work_dir))


def compute_dose_and_let(ct: CtVolume, plan: IonPlan, *, primaries: int, work_dir: Path,
                         scoring_spacing_mm: float | None = None, threads: int = 0,
                         on_progress: ProgressCallback | None = None,
                         threshold_fraction: float = LET_DOSE_THRESHOLD_FRACTION) -> tuple[DoseGrid, LetGrid]:
    """`compute_dose` plus the dose-averaged LET MCsquare scores in the same run, on the same grid (keV/µm).

    LETd is kept where the dose is at least `threshold_fraction` of the dose maximum and set to 0 elsewhere
    (orthanc_rt.analysis.let.restrict_let; why 1 %: docs/physics.md#let).
    """
    dose, let = _simulate(ct, plan, primaries=primaries, work_dir=work_dir, scoring_spacing_mm=scoring_spacing_mm,
                          threads=threads, on_progress=on_progress, let=True)
    assert let is not None
    return dose, restrict_let(let, dose, threshold_fraction)


def _simulate(ct: CtVolume, plan: IonPlan, *, primaries: int, work_dir: Path, scoring_spacing_mm: float | None,
              threads: int, on_progress: ProgressCallback | None, let: bool,
              density_scale: float = 1.0, extra_config: dict | None = None) -> tuple[DoseGrid, LetGrid | None]:
    report = on_progress or (lambda fraction, stage: None)
    if primaries < 1:
        raise ValueError(f"primaries must be positive, not {primaries}")
    if threads < 0:
        raise ValueError(f"threads must be 0 (all cores) or positive, not {threads}")
    report(0.0, "preparing MCsquare inputs")
    model = default_beam_model()
    _check_frame_of_reference(ct, plan)
    opentps_plan = to_opentps_plan(plan, model)
    opentps_ct = to_opentps_ct(ct)
    grid = scoring_grid(ct, scoring_spacing_mm)
    independent = grid != _ct_grid(ct)

    folder = mcsquare.JobFolder.at(work_dir)
    mcsquare.write_inputs(folder, opentps_ct, opentps_plan, model.bdl, model.calibration, primaries=primaries,
                          threads=threads, scoring=grid if independent else None, let=let,
                          density_scale=density_scale, extra_config=extra_config)
    report(_MC_START, f"Monte Carlo: {primaries:.3g} primaries" + (" with LET" if let else ""))
    started = time.monotonic()
    mcsquare.run(folder, on_progress=lambda done, stage: report(_MC_START + _MC_SHARE * done, stage))
    seconds = time.monotonic() - started
    logger.info("MCsquare: %d primaries in %.1f s (%.3g primaries/s incl. start-up)",
                primaries, seconds, primaries / max(seconds, 1e-9))

    report(_MC_START + _MC_SHARE, "reading the dose")
    per_primary = mcsquare.read_dose(folder, grid).imageArray  # [x, y, z], eV/g per primary
    scale = delivered_protons(plan, model) * plan.fractions_planned * GY_PER_EV_PER_G
    dose = DoseGrid(dose_gy=np.ascontiguousarray(per_primary.transpose(2, 1, 0) * scale, dtype=np.float32),
                    origin_mm=grid.origin_mm, spacing_mm=grid.spacing_mm,
                    frame_of_reference_uid=ct.frame_of_reference_uid)
    let_grid = None
    if let:
        values = mcsquare.read_let(folder, grid, per_primary)  # [x, y, z], keV/µm
        let_grid = LetGrid(let_kev_um=np.ascontiguousarray(values.transpose(2, 1, 0)),
                           origin_mm=grid.origin_mm, spacing_mm=grid.spacing_mm,
                           frame_of_reference_uid=ct.frame_of_reference_uid)
    report(1.0, "dose computed")
    return dose, let_grid


def delivered_protons(plan: IonPlan, model: BeamModel) -> float:
    """Protons of one fraction: each layer's MU times the BDL's protons per MU at its energy."""
    return float(sum(layer.mu * model.protons_per_mu(layer.nominal_energy_mev)
                     for beam in plan.beams for layer in beam.layers))


def to_opentps_ct(ct: CtVolume) -> CTImage:
    hu = np.asarray(ct.hu)
    if hu.ndim != 3 or min(hu.shape) < 1:
        raise DicomInputError(f"CT series {ct.series_instance_uid}: expected a 3-D volume, got shape {hu.shape}")
    if any(not (s > 0) for s in ct.spacing_mm):
        raise DicomInputError(f"CT series {ct.series_instance_uid}: voxel spacing {ct.spacing_mm} is not positive")
    return CTImage(imageArray=np.ascontiguousarray(hu.transpose(2, 1, 0), dtype=np.float32),
                   origin=tuple(float(v) for v in ct.origin_mm), spacing=tuple(float(v) for v in ct.spacing_mm),
                   seriesInstanceUID=ct.series_instance_uid, frameOfReferenceUID=ct.frame_of_reference_uid)


def to_opentps_plan(plan: IonPlan, model: BeamModel) -> ProtonPlan:
    """An OpenTPS ProtonPlan with the same spots and MU per fraction; refuses what MCsquare cannot simulate."""
    if plan.fractions_planned < 1:
        raise DicomInputError(f"plan {plan.sop_instance_uid}: NumberOfFractionsPlanned (300A,0078) is "
                              f"{plan.fractions_planned}")
    result = ProtonPlan(name=plan.label or plan.name or "plan")
    # Before any spot: this setter rescales the MU of spots already in the plan.
    result.numberOfFractionsPlanned = int(plan.fractions_planned)
    result.seriesInstanceUID = plan.series_instance_uid
    result.sopInstanceUID = plan.sop_instance_uid
    for beam in plan.beams:
        converted = _to_opentps_beam(beam, model)
        if len(converted):
            result.appendBeam(converted)
    if not len(result):
        raise DicomInputError(f"plan {plan.sop_instance_uid}: no spot has a positive meterset; nothing to simulate")
    return result


def scoring_grid(ct: CtVolume, spacing_mm: float | None) -> ScoringGrid:
    """The CT grid, or an isotropic grid of `spacing_mm` centred in the CT's extent."""
    if spacing_mm is None:
        return _ct_grid(ct)
    if not (spacing_mm > 0):
        raise ValueError(f"scoring spacing must be positive, not {spacing_mm}")
    nz, ny, nx = ct.shape_zyx
    origin, sizes = [], []
    for centre, spacing, count in zip(ct.origin_mm, ct.spacing_mm, (nx, ny, nz)):
        extent = spacing * count
        n = max(1, math.floor(extent / spacing_mm + 1e-6))
        corner = centre - spacing / 2.0
        origin.append(corner + (extent - n * spacing_mm) / 2.0 + spacing_mm / 2.0)
        sizes.append(n)
    grid = ScoringGrid(origin_mm=tuple(origin), spacing_mm=(float(spacing_mm),) * 3, size_xyz=tuple(sizes))
    return _ct_grid(ct) if _same_grid(grid, _ct_grid(ct)) else grid


def _ct_grid(ct: CtVolume) -> ScoringGrid:
    nz, ny, nx = ct.shape_zyx
    return ScoringGrid(origin_mm=tuple(float(v) for v in ct.origin_mm),
                       spacing_mm=tuple(float(v) for v in ct.spacing_mm), size_xyz=(nx, ny, nz))


def _same_grid(a: ScoringGrid, b: ScoringGrid) -> bool:
    return (a.size_xyz == b.size_xyz and np.allclose(a.origin_mm, b.origin_mm, atol=1e-3)
            and np.allclose(a.spacing_mm, b.spacing_mm, atol=1e-3))


def _check_frame_of_reference(ct: CtVolume, plan: IonPlan) -> None:
    if ct.frame_of_reference_uid and plan.frame_of_reference_uid \
            and ct.frame_of_reference_uid != plan.frame_of_reference_uid:
        raise DicomInputError(f"plan {plan.sop_instance_uid} has FrameOfReferenceUID (0020,0052) "
                              f"{plan.frame_of_reference_uid}, the CT {ct.frame_of_reference_uid}")


def _to_opentps_beam(beam: IonBeam, model: BeamModel) -> PlanProtonBeam:
    where = f"beam {beam.number}" + (f" ({beam.name})" if beam.name else "")
    if beam.radiation_type.upper() != "PROTON":
        raise DicomInputError(f"{where}: RadiationType (300A,00C6) is {beam.radiation_type}; "
                              "the MCsquare engine simulates protons only")
    if beam.scan_mode.upper() not in _SCAN_MODES:
        raise DicomInputError(f"{where}: ScanMode (300A,0308) is {beam.scan_mode}; MCsquare simulates "
                              "pencil-beam scanning (MODULATED) plans only")
    result = PlanProtonBeam()
    result.name = beam.name
    result.id = beam.number
    result.gantryAngle = float(beam.gantry_angle_deg)
    result.couchAngle = float(beam.couch_angle_deg)
    result.isocenterPosition = [float(v) for v in beam.isocenter_mm]
    shifter = _range_shifter(beam, model, where)
    result.rangeShifter = shifter
    low, high = model.energy_range_mev
    for index, layer in enumerate(beam.layers, start=1):
        energy = float(layer.nominal_energy_mev)
        if not (low <= energy <= high):
            raise DicomInputError(f"{where} layer {index}: {energy:.1f} MeV is outside the beam model's range "
                                  f"{low:.1f}–{high:.1f} MeV (BDL {Path(model.bdl_path).name})")
        converted = _to_opentps_layer(layer, f"{where} layer {index}")
        if converted is None:
            continue
        if shifter is not None:
            _set_range_shifter(converted, beam, layer, model)
        result.appendLayer(converted)
    return result


def _to_opentps_layer(layer: EnergyLayer, where: str) -> PlanProtonLayer | None:
    x, y, mu = (np.asarray(a, dtype=np.float64).ravel() for a in (layer.spot_x_mm, layer.spot_y_mm, layer.spot_mu))
    if not (len(x) == len(y) == len(mu)):
        raise DicomInputError(f"{where}: {len(x)} spot x, {len(y)} spot y and {len(mu)} spot MU values")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y)) and np.all(np.isfinite(mu))):
        raise DicomInputError(f"{where}: spot positions or weights are not finite numbers")
    if np.any(mu < 0):
        raise DicomInputError(f"{where}: negative ScanSpotMetersetWeights (300A,0396)")
    keep = mu > 0  # zero-weight spots deliver nothing; MCsquare need not see them
    if not np.any(keep):
        return None
    result = PlanProtonLayer(nominalEnergy=float(layer.nominal_energy_mev))
    result.numberOfPaintings = int(layer.number_of_paintings)
    fill_spots(result, x[keep], y[keep], mu[keep])
    return result


def fill_spots(layer: PlanProtonLayer, x: np.ndarray, y: np.ndarray, mu: np.ndarray) -> None:
    """Put all spots in at once.

    `PlanProtonLayer.appendSpot` compares each new spot with every earlier one
    in Python (6 s for a 1000-spot layer) and refuses a position listed twice,
    which DICOM allows and MCsquare simulates fine. OpenTPS 2.0.0 keeps the
    spots in these three arrays; fail loudly if a later version does not.
    """
    if not all(isinstance(getattr(layer, name, None), np.ndarray) for name in ("_x", "_y", "_mu")):
        raise DoseEngineError("this OpenTPS version stores layer spots differently; update worker.engines.proton_dose")
    layer._x, layer._y, layer._mu = x.copy(), y.copy(), mu.copy()


def _range_shifter(beam: IonBeam, model: BeamModel, where: str) -> OpenTpsRangeShifter | None:
    if not beam.range_shifters:
        if any(layer.range_shifter_in for layer in beam.layers):
            raise DicomInputError(f"{where}: a layer puts a range shifter in but the beam's RangeShifterSequence "
                                  "(300A,0314) is empty")
        return None
    if len(beam.range_shifters) > 1:
        raise DicomInputError(f"{where}: {len(beam.range_shifters)} range shifters; MCsquare simulates one per beam")
    shifter = beam.range_shifters[0]
    if shifter.type.upper() != "BINARY":
        raise DicomInputError(f"{where}: range shifter {shifter.identifier} is {shifter.type}; "
                              "only BINARY range shifters can be simulated")
    known = {rs.ID: rs for rs in model.bdl.rangeShifters}
    if shifter.identifier not in known:
        available = ", ".join(sorted(known)) or "none"
        raise DicomInputError(f"{where}: RangeShifterID (300A,0318) {shifter.identifier!r} is not in the beam model "
                              f"(BDL {Path(model.bdl_path).name} has: {available})")
    modelled = known[shifter.identifier]
    if str(modelled.type).lower() != "binary":
        raise DicomInputError(f"{where}: the beam model's range shifter {shifter.identifier} is {modelled.type}; "
                              "only binary range shifters can be simulated")
    return modelled


def _set_range_shifter(layer: PlanProtonLayer, beam: IonBeam, source: EnergyLayer, model: BeamModel) -> None:
    shifter = beam.range_shifters[0]
    settings = layer.rangeShifterSettings
    settings.rangeShifterSetting = "IN" if source.range_shifter_in else "OUT"
    settings.referencedRangeShifterNumber = shifter.number
    # Where the slab sits only changes the spot size downstream; when the plan does not say, use the snout
    # position as OpenTPS' DICOM reader does, else the nozzle exit of the beam model.
    distance = shifter.isocenter_to_range_shifter_distance_mm
    if distance is None:
        distance = beam.snout_position_mm if beam.snout_position_mm is not None else model.bdl.nozzle_isocenter
    settings.isocenterToRangeShifterDistance = float(distance)
    # None makes OpenTPS write the beam model's WET.
    settings.rangeShifterWaterEquivalentThickness = shifter.water_equivalent_thickness_mm
