"""Synthetic cases for the demo and the tests: a water phantom with a target and a proton PBS plan.

Geometry, in DICOM patient coordinates for a head-first-supine patient (the
only position the readers accept): x towards the patient's left, y towards
posterior, z towards the head. The water box is centred on the origin.
Following IEC 61217, at gantry 0 the source is above the couch, i.e. anterior
of a supine patient, so a gantry-0 beam enters at the smallest y and travels
towards +y; at gantry 90 it comes from the patient's left (+x) and travels
towards -x. In general, with the couch at 0, the beam direction is
(-sin g, cos g, 0). Spot y (IEC beam-limiting-device Y) is patient z.

Energies are placed with the Bragg-Kleeman rule R = alpha * E^p for water
(alpha = 0.0022 cm MeV^-p, p = 1.77; Bortfeld 1997, Med. Phys. 24:2024):
close enough to cover a target with layers; the physics tests check ranges
against NIST PSTAR, not against this rule. The default MU give about 2 Gy
per fraction in the target with the beam model OpenTPS ships.

All UIDs are derived from the case name, so a case is the same objects
every time it is built.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Sequence

import numpy as np
from pydicom.dataset import Dataset

from orthanc_rt.dicom.ct import build_ct_series, read_ct_series
from orthanc_rt.dicom.ion_plan import build_ion_plan
from orthanc_rt.dicom.models import (
    CtVolume,
    EnergyLayer,
    IonBeam,
    PatientStudy,
    RangeShifter,
)
from orthanc_rt.dicom.rtstruct import RoiSpec, build_rtstruct
from orthanc_rt.dicom.uids import derive_uid

_ALPHA_CM, _P = 0.0022, 1.77
# Fixed so that a case's bytes, not only its UIDs, are the same every time.
CASE_DATETIME = datetime(2024, 1, 1, 12, 0, 0)
HU_WATER, HU_AIR = 0.0, -1000.0
_DISTAL_WEIGHT, _PROXIMAL_WEIGHT = 1.0, 0.3  # a crude SOBP: the distal layer carries the most MU


def energy_for_range_mm(range_mm: float) -> float:
    """Nominal energy (MeV) whose range in water is `range_mm` (Bragg-Kleeman)."""
    return float((range_mm / 10.0 / _ALPHA_CM) ** (1.0 / _P))


def range_mm_for_energy(energy_mev: float) -> float:
    """Range in water (mm) of `energy_mev` (Bragg-Kleeman)."""
    return float(10.0 * _ALPHA_CM * energy_mev**_P)


def beam_direction(gantry_angle_deg: float) -> np.ndarray:
    """Unit vector of travel (x, y, z) of a beam at couch 0 on a head-first-supine patient."""
    g = math.radians(gantry_angle_deg)
    return np.array([-math.sin(g), math.cos(g), 0.0])


@dataclass
class PhantomCase:
    name: str
    study: PatientStudy
    ct_volume: CtVolume  # read back from `ct`, so it carries the slices' SOPInstanceUIDs
    ct: list[Dataset]
    rtstruct: Dataset
    plan: Dataset
    beams: list[IonBeam]
    target_mask: np.ndarray  # [z, y, x] on the CT grid: the PTV "TargetVolume"
    external_mask: np.ndarray  # [z, y, x]: the water box, ROI "External"
    target_center_mm: tuple[float, float, float]  # also every beam's isocentre
    # Every ROI of the RTSTRUCT by name, [z, y, x] on the CT grid (the water phantom: its two ROIs).
    roi_masks: dict[str, np.ndarray] = field(default_factory=dict)


def case_uid(name: str, *what: str) -> str:
    """The UID of object `what` of case `name`."""
    return derive_uid("orthanc-rt-phantom", name, *what)


def case_study(name: str, *, patient_name: str = "ORTHANC-RT^DEMO") -> PatientStudy:
    return PatientStudy(
        patient_id=f"ORT-{name}"[:64], patient_name=patient_name,
        study_instance_uid=case_uid(name, "study"), frame_of_reference_uid=case_uid(name, "frame"),
        study_id="1", study_description=f"Orthanc-RT water phantom ({name})"[:64],
        study_date=CASE_DATETIME.strftime("%Y%m%d"), study_time=CASE_DATETIME.strftime("%H%M%S"))


def water_phantom_case(name: str = "demo", *, size_mm: Sequence[float] = (100.0, 120.0, 80.0),
                       spacing_mm: float | Sequence[float] = 2.0,
                       target_size_mm: float | Sequence[float] = 30.0, target_depth_mm: float = 60.0,
                       target_center_mm: Sequence[float] | None = None, air_margin_mm: float | None = None,
                       gantry_angles_deg: Sequence[float] = (0.0,), energy_mev: float | None = None,
                       layer_spacing_mm: float = 5.0, spot_spacing_mm: float = 5.0, mu_per_spot: float = 1.3,
                       fractions: int = 1, treatment_machine: str = "Generic",
                       patient_name: str = "ORTHANC-RT^DEMO") -> PhantomCase:
    """A water box (HU 0) in air with a box PTV `TargetVolume`, an External ROI and a PBS plan.

    The water spans `size_mm` (x, y, z) centred on the origin, with
    `air_margin_mm` of air around it (default: one voxel). The target's
    centre, which is also the isocentre, is `target_center_mm`, or
    `target_depth_mm` below the anterior surface on the y axis. Each gantry
    angle gives one beam whose layers, `layer_spacing_mm` apart in range,
    cover the target's depth along that beam, with a square spot grid over the
    target's projection; with `energy_mev` every beam has that single layer.
    """
    size = np.asarray(size_mm, dtype=float)
    spacing = np.broadcast_to(np.asarray(spacing_mm, dtype=float), (3,))
    target_half = np.broadcast_to(np.asarray(target_size_mm, dtype=float), (3,)) / 2.0
    center = np.array(target_center_mm if target_center_mm is not None
                      else (0.0, -size[1] / 2.0 + target_depth_mm, 0.0), dtype=float)
    if np.any(np.abs(center) + target_half >= size / 2.0):
        raise ValueError(f"the target (centre {tuple(center)} mm, size {tuple(2 * target_half)} mm) does not fit "
                         f"inside the water box {tuple(size)} mm")
    study = case_study(name, patient_name=patient_name)
    margin = float(spacing.max()) if air_margin_mm is None else float(air_margin_mm)
    shape_xyz = np.rint((size + 2 * margin) / spacing).astype(int)
    origin = -shape_xyz * spacing / 2.0 + spacing / 2.0
    x, y, z = (origin[i] + spacing[i] * np.arange(shape_xyz[i]) for i in range(3))
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    points = (xx, yy, zz)
    # Centres on the boundary count as inside (1e-6 absorbs rounding of the grid).
    water = np.logical_and.reduce([np.abs(p) <= h + 1e-6 for p, h in zip(points, size / 2.0)])
    target = np.logical_and.reduce([np.abs(p - c) <= h + 1e-6 for p, c, h in zip(points, center, target_half)])
    volume = CtVolume(hu=np.where(water, HU_WATER, HU_AIR).astype(np.float32),
                      origin_mm=tuple(float(v) for v in origin), spacing_mm=tuple(float(v) for v in spacing),
                      frame_of_reference_uid=study.frame_of_reference_uid)
    ct = build_ct_series(volume, study, series_instance_uid=case_uid(name, "ct-series"),
                         series_description="Water phantom CT", created=CASE_DATETIME)
    rtstruct = build_rtstruct(ct, study, [RoiSpec("TargetVolume", target, "PTV", (255, 0, 0)),
                                          RoiSpec("External", water, "EXTERNAL", (0, 255, 0))],
                              series_instance_uid=case_uid(name, "rtstruct-series"),
                              sop_instance_uid=case_uid(name, "rtstruct"), label="Phantom ROIs",
                              created=CASE_DATETIME)
    isocenter = tuple(float(v) for v in center)
    beams = []
    for number, gantry in enumerate(gantry_angles_deg, start=1):
        direction = beam_direction(gantry)
        spots = _spot_grid(_lateral_half_extents(direction, target_half), spot_spacing_mm)
        if energy_mev is not None:
            energies, weights = [float(energy_mev)], [_DISTAL_WEIGHT]
        else:
            depth = _water_depth(center, direction, size / 2.0)
            along = float(np.abs(direction) @ target_half)
            energies, weights = _layers_covering(depth - along, depth + along, layer_spacing_mm)
        beams.append(_beam(number, gantry, isocenter, energies, [w * mu_per_spot for w in weights], spots,
                           treatment_machine))
    plan = build_ion_plan(study, beams, sop_instance_uid=case_uid(name, "plan"),
                          series_instance_uid=case_uid(name, "plan-series"), label=f"PBS {name}"[:16],
                          plan_name=f"Water phantom PBS ({name})"[:64], fractions_planned=fractions,
                          referenced_structure_set_uid=str(rtstruct.SOPInstanceUID), created=CASE_DATETIME)
    return PhantomCase(name=name, study=study, ct_volume=read_ct_series(ct), ct=ct, rtstruct=rtstruct, plan=plan,
                       beams=beams, target_mask=target, external_mask=water, target_center_mm=isocenter,
                       roi_masks={"TargetVolume": target, "External": water})


def single_energy_beam(energy_mev: float, *, spots_xy_mm: Sequence[tuple[float, float]] = ((0.0, 0.0),),
                       mu_per_spot: float = 1.0, gantry_angle_deg: float = 0.0,
                       isocenter_mm: Sequence[float] = (0.0, 0.0, 0.0), number: int = 1,
                       range_shifter: RangeShifter | None = None, treatment_machine: str = "Generic") -> IonBeam:
    """One beam, one layer: spots at `spots_xy_mm` (IEC beam's-eye x, y at the isocentre), equal MU."""
    spots = np.asarray(spots_xy_mm, dtype=float).reshape(-1, 2)
    beam = _beam(number, gantry_angle_deg, tuple(float(v) for v in isocenter_mm), [float(energy_mev)],
                 [mu_per_spot], spots, treatment_machine)
    if range_shifter is not None:
        beam.range_shifters = [range_shifter]
        beam.layers[0].range_shifter_in = True
    return beam


def single_energy_plan(study: PatientStudy, name: str, *, energy_mev: float,
                       spots_xy_mm: Sequence[tuple[float, float]] = ((0.0, 0.0),), mu_per_spot: float = 1.0,
                       gantry_angle_deg: float = 0.0, isocenter_mm: Sequence[float] = (0.0, 0.0, 0.0),
                       fractions: int = 1, range_shifter: RangeShifter | None = None,
                       referenced_structure_set_uid: str | None = None) -> Dataset:
    """An RT Ion Plan of one beam with one energy layer (a single spot by default), for physics checks."""
    beam = single_energy_beam(energy_mev, spots_xy_mm=spots_xy_mm, mu_per_spot=mu_per_spot,
                              gantry_angle_deg=gantry_angle_deg, isocenter_mm=isocenter_mm,
                              range_shifter=range_shifter)
    return build_ion_plan(study, [beam], sop_instance_uid=case_uid(name, "single-energy-plan"),
                          series_instance_uid=case_uid(name, "single-energy-plan-series"),
                          label=f"{energy_mev:g} MeV"[:16], fractions_planned=fractions,
                          referenced_structure_set_uid=referenced_structure_set_uid, created=CASE_DATETIME)


def _beam(number: int, gantry: float, isocenter: tuple[float, float, float], energies: Sequence[float],
          mu_per_spot: Sequence[float], spots: np.ndarray, treatment_machine: str) -> IonBeam:
    layers = [EnergyLayer(nominal_energy_mev=energy, spot_x_mm=spots[:, 0].copy(), spot_y_mm=spots[:, 1].copy(),
                          spot_mu=np.full(len(spots), mu), spot_tune_id="Spot1")
              for energy, mu in zip(energies, mu_per_spot)]
    return IonBeam(number=number, name=f"G{gantry:g}", gantry_angle_deg=float(gantry), couch_angle_deg=0.0,
                   isocenter_mm=isocenter, layers=layers, meterset_mu=float(sum(layer.mu for layer in layers)),
                   treatment_machine=treatment_machine)


def _layers_covering(proximal_mm: float, distal_mm: float, layer_spacing_mm: float) -> tuple[list[float], list[float]]:
    """Energies (distal first) whose ranges step from the distal to the proximal depth, and relative weights."""
    count = int(math.floor((distal_mm - proximal_mm) / layer_spacing_mm + 1e-6)) + 1
    ranges = distal_mm - layer_spacing_mm * np.arange(count)
    energies = [round(energy_for_range_mm(r), 2) for r in ranges]
    return energies, [_DISTAL_WEIGHT] + [_PROXIMAL_WEIGHT] * (count - 1)


def _water_depth(point: np.ndarray, direction: np.ndarray, half_size: np.ndarray) -> float:
    """Path length in the water box from where the beam enters it to `point` (inside the box)."""
    distances = [(half_size[i] + point[i] * math.copysign(1.0, direction[i])) / abs(direction[i])
                 for i in range(3) if abs(direction[i]) > 1e-9]
    return float(min(distances))


def _lateral_half_extents(direction: np.ndarray, target_half: np.ndarray) -> tuple[float, float]:
    """Half-widths of the box target in the beam's eye view: along IEC X (in the x-y plane) and Y (= z)."""
    across = np.array([direction[1], -direction[0], 0.0])  # perpendicular to the beam, in the x-y plane
    return float(np.abs(across) @ target_half), float(target_half[2])


def _spot_grid(half_extents: tuple[float, float], spacing_mm: float) -> np.ndarray:
    """A square grid centred on the isocentre covering +-half extent (spots on the edges), as (n, 2) x, y."""
    axes = []
    for half in half_extents:
        count = int(math.floor(2 * half / spacing_mm + 1e-6)) + 1
        axes.append((np.arange(count) - (count - 1) / 2.0) * spacing_mm)
    gx, gy = np.meshgrid(axes[0], axes[1])
    return np.column_stack([gx.ravel(), gy.ravel()])


# The patient-like case: HU of its tissues (typical CT numbers, e.g. Schneider et al. 1996, PMB 41:111).
HU_SOFT_TISSUE, HU_FAT, HU_BONE, HU_GAS = 40.0, -100.0, 700.0, -900.0
# A rough HU -> relative stopping power curve (piecewise linear, water = 1): air-to-water follows density,
# bone rises more slowly than density (cortical bone near HU 1000-1500 has an RSP of about 1.5-1.7).
# Only used to place the energy layers: the recompute uses MCsquare's own calibration.
_HU_RSP = ((-1000.0, 0.0), (0.0, 1.0), (1000.0, 1.5), (3000.0, 2.5))
# Spots are placed on rays passing through the PTV grown by this much, so the lateral penumbra covers its edge.
_LATERAL_MARGIN_MM = 8.0
_RAY_STEP_MM = 0.5


def patient_like_case(name: str = "pelvis", *, spacing_mm: Sequence[float] = (2.5, 2.5, 3.0),
                      fov_mm: Sequence[float] = (400.0, 300.0, 150.0), body_mm: Sequence[float] = (300.0, 200.0),
                      fat_thickness_mm: float = 15.0, ptv_size_mm: Sequence[float] = (60.0, 50.0, 60.0),
                      gantry_angles_deg: Sequence[float] = (90.0, 270.0), spot_spacing_mm: float = 6.0,
                      layer_spacing_mm: float = 6.0, mu_per_spot: float = 0.72, fractions: int = 1,
                      treatment_machine: str = "Generic", patient_name: str = "ORTHANC-RT^PELVIS") -> PhantomCase:
    """A pelvis-like patient in air with a prostate-like PTV, organs at risk and a two-field lateral PBS plan.

    The body is an elliptic cylinder (`body_mm` wide and deep, over the whole
    `fov_mm` length in z) of soft tissue under `fat_thickness_mm` of fat,
    centred in a field of view `fov_mm` of air. Inside: pelvic bone (an
    acetabular shell around each femoral head, iliac blades further up, the
    pubic symphysis in front), two femoral heads, the PTV (an ellipsoid
    `ptv_size_mm`, centred 10 mm posterior of the origin), the bladder
    anterior-superior and the rectum posterior of it, both touching it, with a
    gas pocket in the rectum. ROIs: External (EXTERNAL), PTV (PTV), Rectum,
    Bladder, FemoralHead_L, FemoralHead_R (ORGAN).

    The plan has one field per gantry angle (isocentre at the PTV centre).
    Each spot's ray is traced through the CT with a rough HU -> stopping power
    curve (`_HU_RSP`), so the layers follow the water-equivalent depth of the
    PTV behind bone and fat; spots sit where a layer's range falls inside the
    PTV on that ray (the distal one on each ray weighted most, a crude SOBP).
    The stopping powers are not MCsquare's and the SOBP weights are crude, so
    coverage is approximate: with the beam model OpenTPS ships, the default
    `mu_per_spot` gives a mean PTV dose of about 2 Gy per fraction (measured
    2.0 Gy, 2 Gy near the centre) with D98 near 70 % of it at the PTV's
    edges. Good enough for a dose check test case, not a clinical plan.
    """
    spacing = np.asarray(spacing_mm, dtype=float)
    fov = np.asarray(fov_mm, dtype=float)
    shape_xyz = np.rint(fov / spacing).astype(int)
    origin = -shape_xyz * spacing / 2.0 + spacing / 2.0
    x, y, z = (origin[i] + spacing[i] * np.arange(shape_xyz[i]) for i in range(3))
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    half_x, half_y = float(body_mm[0]) / 2.0, float(body_mm[1]) / 2.0

    def ellipsoid(center: Sequence[float], semi: Sequence[float]) -> np.ndarray:
        return ((xx - center[0]) / semi[0]) ** 2 + ((yy - center[1]) / semi[1]) ** 2 \
            + ((zz - center[2]) / semi[2]) ** 2 <= 1.0

    body = (xx / half_x) ** 2 + (yy / half_y) ** 2 <= 1.0
    inner = (xx / (half_x - fat_thickness_mm)) ** 2 + (yy / (half_y - fat_thickness_mm)) ** 2 <= 1.0
    ptv_center = (0.0, 10.0, 0.0)
    ptv_half = np.asarray(ptv_size_mm, dtype=float) / 2.0
    ptv = ellipsoid(ptv_center, ptv_half)
    # Bladder and rectum overlap the PTV's ellipsoid and give it up: they touch it without overlapping.
    bladder = ellipsoid((0.0, ptv_center[1] - ptv_half[1] - 10.0, 25.0), (40.0, 30.0, 35.0)) & ~ptv & inner
    rectum_center = (0.0, ptv_center[1] + ptv_half[1] + 12.0)
    rectum = ((xx - rectum_center[0]) ** 2 + (yy - rectum_center[1]) ** 2 <= 17.0**2) & (np.abs(zz) <= 55.0) & ~ptv
    gas = ellipsoid((rectum_center[0], rectum_center[1] + 3.0, -10.0), (9.0, 8.0, 15.0)) & rectum
    heads = {side: ellipsoid((sign * 95.0, 10.0, -5.0), (22.0, 22.0, 22.0)) for side, sign in (("L", 1.0), ("R", -1.0))}
    bone = np.zeros_like(body)
    for sign in (1.0, -1.0):
        # The acetabulum cups the head from the medial side; the iliac blade rises above it.
        shell = ellipsoid((sign * 95.0, 10.0, -5.0), (32.0, 32.0, 32.0)) & (sign * xx < 95.0)
        blade = ellipsoid((sign * 105.0, 20.0, 55.0), (14.0, 45.0, 30.0))
        bone |= shell | blade
    bone |= ellipsoid((0.0, -75.0, -20.0), (15.0, 8.0, 20.0))  # pubic symphysis
    for head in heads.values():
        bone &= ~head
    bone &= inner & ~ptv & ~bladder & ~rectum
    hu = np.full(body.shape, HU_AIR, dtype=np.float32)
    hu[body] = HU_FAT
    hu[inner] = HU_SOFT_TISSUE
    hu[bone] = HU_BONE
    for head in heads.values():
        hu[head] = HU_BONE
    hu[gas] = HU_GAS
    study = PatientStudy(
        patient_id=f"ORT-{name}"[:64], patient_name=patient_name,
        study_instance_uid=case_uid(name, "study"), frame_of_reference_uid=case_uid(name, "frame"),
        study_id="1", study_description=f"Orthanc-RT pelvis phantom ({name})"[:64],
        study_date=CASE_DATETIME.strftime("%Y%m%d"), study_time=CASE_DATETIME.strftime("%H%M%S"))
    volume = CtVolume(hu=hu, origin_mm=tuple(float(v) for v in origin), spacing_mm=tuple(float(v) for v in spacing),
                      frame_of_reference_uid=study.frame_of_reference_uid)
    ct = build_ct_series(volume, study, series_instance_uid=case_uid(name, "ct-series"),
                         series_description="Pelvis phantom CT", created=CASE_DATETIME)
    masks = {"External": body, "PTV": ptv, "Rectum": rectum, "Bladder": bladder,
             "FemoralHead_L": heads["L"], "FemoralHead_R": heads["R"]}
    kinds = {"External": "EXTERNAL", "PTV": "PTV"}
    rtstruct = build_rtstruct(ct, study, [RoiSpec(roi, mask, kinds.get(roi, "ORGAN")) for roi, mask in masks.items()],
                              series_instance_uid=case_uid(name, "rtstruct-series"),
                              sop_instance_uid=case_uid(name, "rtstruct"), label="Pelvis ROIs",
                              created=CASE_DATETIME)
    isocenter = tuple(float(v) for v in ptv_center)
    grown = ellipsoid(ptv_center, ptv_half + _LATERAL_MARGIN_MM)
    rsp = np.interp(hu, *zip(*_HU_RSP)).astype(np.float32)
    beams = [_field_through(number, gantry, isocenter, ptv, grown, rsp, origin, spacing, spot_spacing_mm,
                            layer_spacing_mm, mu_per_spot, treatment_machine)
             for number, gantry in enumerate(gantry_angles_deg, start=1)]
    plan = build_ion_plan(study, beams, sop_instance_uid=case_uid(name, "plan"),
                          series_instance_uid=case_uid(name, "plan-series"), label=f"PBS {name}"[:16],
                          plan_name=f"Pelvis phantom PBS ({name})"[:64], fractions_planned=fractions,
                          referenced_structure_set_uid=str(rtstruct.SOPInstanceUID), created=CASE_DATETIME)
    return PhantomCase(name=name, study=study, ct_volume=read_ct_series(ct), ct=ct, rtstruct=rtstruct, plan=plan,
                       beams=beams, target_mask=ptv, external_mask=body, target_center_mm=isocenter, roi_masks=masks)


def spot_ray_points(beam: IonBeam, spot_xy_mm: tuple[float, float], distances_mm: np.ndarray) -> np.ndarray:
    """Points (n, 3) x, y, z at `distances_mm` along a spot's ray, measured from its isocentre plane (couch 0)."""
    direction = beam_direction(beam.gantry_angle_deg)
    across = np.array([direction[1], -direction[0], 0.0])  # IEC X in the x-y plane; IEC Y is patient z
    start = np.asarray(beam.isocenter_mm) + spot_xy_mm[0] * across + np.array([0.0, 0.0, spot_xy_mm[1]])
    return start[None, :] + np.asarray(distances_mm, dtype=float)[:, None] * direction[None, :]


def _field_through(number: int, gantry: float, isocenter: tuple[float, float, float], ptv: np.ndarray,
                   grown: np.ndarray, rsp: np.ndarray, origin: np.ndarray, spacing: np.ndarray,
                   spot_spacing_mm: float, layer_spacing_mm: float, mu_per_spot: float,
                   treatment_machine: str) -> IonBeam:
    """One field: spots on rays through the grown PTV, layers stepping through its water-equivalent depth."""
    probe = IonBeam(number=number, name=f"G{gantry:g}", gantry_angle_deg=float(gantry), couch_angle_deg=0.0,
                    isocenter_mm=isocenter, layers=[], meterset_mu=0.0, treatment_machine=treatment_machine)
    extent = float(np.linalg.norm(spacing * np.asarray(ptv.shape[::-1])))  # longer than any path in the CT
    distances = np.arange(-extent / 2.0, extent / 2.0, _RAY_STEP_MM)
    reach = float(np.max(np.abs(spacing * np.asarray(ptv.shape[::-1]))))
    candidates = _spot_grid((reach / 2.0, reach / 2.0), spot_spacing_mm)
    rays: list[tuple[np.ndarray, float, float]] = []  # (spot, WET to the PTV's proximal and distal edges)
    for spot in candidates:
        points = spot_ray_points(probe, (float(spot[0]), float(spot[1])), distances)
        index = np.rint((points - origin) / spacing).astype(int)[:, ::-1]  # z, y, x
        inside = np.all((index >= 0) & (index < np.asarray(ptv.shape)), axis=1)
        if not inside.any():
            continue
        index = index[inside]
        if not grown[tuple(index.T)].any():
            continue
        wet = np.cumsum(rsp[tuple(index.T)]) * _RAY_STEP_MM
        hits = np.nonzero(ptv[tuple(index.T)])[0]
        if hits.size:
            rays.append((spot, float(wet[hits[0]]), float(wet[hits[-1]])))
        else:  # in the margin only: aim at the depth of the closest ray's target, here the grown PTV
            grown_hits = np.nonzero(grown[tuple(index.T)])[0]
            rays.append((spot, float(wet[grown_hits[0]]), float(wet[grown_hits[-1]])))
    deepest = max(distal for _, _, distal in rays)
    shallowest = min(proximal for _, proximal, _ in rays)
    ranges = deepest - layer_spacing_mm * np.arange(int(math.floor((deepest - shallowest) / layer_spacing_mm)) + 1)
    layers = []
    for r in ranges:
        # A ray gets this layer when the range falls in its PTV span (half a layer spacing of tolerance).
        chosen = [(spot, distal) for spot, proximal, distal in rays
                  if proximal - layer_spacing_mm / 2.0 <= r <= distal + layer_spacing_mm / 2.0]
        if not chosen:
            continue
        spots = np.array([spot for spot, _ in chosen])
        weights = np.array([_DISTAL_WEIGHT if r > distal - layer_spacing_mm / 2.0 else _PROXIMAL_WEIGHT
                            for _, distal in chosen])
        layers.append(EnergyLayer(nominal_energy_mev=round(energy_for_range_mm(float(r)), 2),
                                  spot_x_mm=spots[:, 0].copy(), spot_y_mm=spots[:, 1].copy(),
                                  spot_mu=weights * mu_per_spot, spot_tune_id="Spot1"))
    probe.layers = layers
    probe.meterset_mu = float(sum(layer.mu for layer in layers))
    return probe
