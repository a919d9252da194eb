"""Synthetic cases for the demo and the tests: a water phantom with a target and a proton plan.

Geometry (DICOM patient coordinates, head-first supine): a gantry-0 beam
comes from anterior, i.e. enters at the smallest y and travels towards +y.
Energies are chosen with the Bragg–Kleeman rule R = α·E^p for water
(α = 0.0022 cm·MeV^-p, p = 1.77; Bortfeld 1997, Med. Phys. 24:2024), which is
close enough to place layers across a target; the physics tests check ranges
against NIST PSTAR, not against this rule.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from orthanc_rt.dicom.builders import RoiSpec, build_ct_series, build_ion_plan, build_rtstruct
from orthanc_rt.dicom.models import CtVolume, EnergyLayer, IonBeam, PatientStudy
from orthanc_rt.uids import derive_uid

_ALPHA_CM, _P = 0.0022, 1.77


def energy_for_range_mm(range_mm: float) -> float:
    return float((range_mm / 10.0 / _ALPHA_CM) ** (1.0 / _P))


def range_mm_for_energy(energy_mev: float) -> float:
    return float(10.0 * _ALPHA_CM * energy_mev**_P)


@dataclass
class PhantomCase:
    study: PatientStudy
    ct_volume: CtVolume
    ct: list[Dataset]
    rtstruct: Dataset
    plan: Dataset
    beams: list[IonBeam]
    target_mask: np.ndarray  # [z, y, x] on the CT grid
    target_center_mm: tuple[float, float, float]


def water_phantom_case(name: str = "demo", *, size_mm: tuple[float, float, float] = (100.0, 120.0, 80.0),
                       spacing_mm: float = 2.0, target_size_mm: float = 30.0, target_depth_mm: float = 60.0,
                       energy_mev: float | None = None, spot_spacing_mm: float = 5.0, mu_per_spot: float = 1.3,
                       fractions: int = 1, patient_name: str = "ORTHANC-RT^DEMO") -> PhantomCase:
    """A water box (HU 0) in air with a cubic PTV `TargetVolume`, an RTSTRUCT and a one-beam PBS plan.

    The box spans `size_mm` (x, y, z) centred at the origin; the target's centre is at
    `target_depth_mm` below the anterior surface on the beam axis (gantry 0). With
    `energy_mev` the plan is a single layer at that energy (physics checks); otherwise
    layers 5 mm apart in range cover the target, the distal one weighted most. The default
    MU give about 2 Gy per fraction in the target with the beam model OpenTPS ships.
    """
    sx, sy, sz = size_mm
    if target_depth_mm + target_size_mm / 2 >= sy:
        raise ValueError(f"target (depth {target_depth_mm} mm) does not fit in the phantom's {sy} mm")
    study = PatientStudy(
        patient_id=f"ORT-{name}", patient_name=patient_name,
        study_instance_uid=derive_uid("orthanc-rt-phantom", name, "study"),
        frame_of_reference_uid=derive_uid("orthanc-rt-phantom", name, "frame"),
        study_id="1", study_description=f"Orthanc-RT water phantom ({name})")
    # One voxel of air around the water so the beam enters through a surface.
    margin = spacing_mm
    shape = tuple(int(round((s + 2 * margin) / spacing_mm)) for s in (sz, sy, sx))  # z, y, x
    origin = (-sx / 2 - margin + spacing_mm / 2, -sy / 2 - margin + spacing_mm / 2, -sz / 2 - margin + spacing_mm / 2)
    zc, yc, xc = _centres(shape, origin, spacing_mm)
    water = (np.abs(xc) <= sx / 2) & (np.abs(yc) <= sy / 2) & (np.abs(zc) <= sz / 2)
    hu = np.where(water, 0.0, -1000.0).astype(np.float32)
    target_center = (0.0, -sy / 2 + target_depth_mm, 0.0)
    half = target_size_mm / 2
    target = ((np.abs(xc - target_center[0]) <= half) & (np.abs(yc - target_center[1]) <= half)
              & (np.abs(zc - target_center[2]) <= half))
    volume = CtVolume(hu=hu, origin_mm=origin, spacing_mm=(spacing_mm,) * 3,
                      frame_of_reference_uid=study.frame_of_reference_uid,
                      series_instance_uid=derive_uid("orthanc-rt-phantom", name, "ct-series"),
                      study_instance_uid=study.study_instance_uid)
    ct = build_ct_series(volume, study, series_instance_uid=volume.series_instance_uid,
                         series_description="Water phantom CT")
    rtstruct = build_rtstruct(ct, study, [
        RoiSpec("TargetVolume", target, "PTV", (255, 0, 0)),
        RoiSpec("External", water, "EXTERNAL", (0, 255, 0)),
    ], series_instance_uid=derive_uid("orthanc-rt-phantom", name, "rtstruct-series"),
        sop_instance_uid=derive_uid("orthanc-rt-phantom", name, "rtstruct"), label="Phantom ROIs")
    beam = _beam(target_center, target_size_mm, target_depth_mm, energy_mev, spot_spacing_mm, mu_per_spot)
    plan = build_ion_plan(study, [beam], sop_instance_uid=derive_uid("orthanc-rt-phantom", name, "plan"),
                          series_instance_uid=derive_uid("orthanc-rt-phantom", name, "plan-series"),
                          label=f"PBS {name}"[:16], fractions_planned=fractions,
                          referenced_structure_set_uid=str(rtstruct.SOPInstanceUID))
    return PhantomCase(study=study, ct_volume=volume, ct=ct, rtstruct=rtstruct, plan=plan, beams=[beam],
                       target_mask=target, target_center_mm=target_center)


def _beam(center: tuple[float, float, float], size: float, depth: float, energy: float | None,
          spot_spacing: float, mu_per_spot: float) -> IonBeam:
    half = size / 2
    # Spots in the beam's eye view: x along patient x, y along patient z for gantry 0 (IEC).
    grid = np.arange(-half, half + 1e-6, spot_spacing)
    gx, gy = np.meshgrid(grid, grid)
    x, y = gx.ravel(), gy.ravel()
    if energy is not None:
        energies, weights = [energy], [1.0]
    else:
        ranges = np.arange(depth + half, depth - half - 1e-6, -5.0)  # distal first
        energies = [round(energy_for_range_mm(r), 2) for r in ranges]
        weights = [1.0] + [0.3] * (len(energies) - 1)
    layers = [EnergyLayer(nominal_energy_mev=e, spot_x_mm=x.copy(), spot_y_mm=y.copy(),
                          spot_mu=np.full(len(x), mu_per_spot * w)) for e, w in zip(energies, weights)]
    total = float(sum(layer.mu for layer in layers))
    return IonBeam(number=1, name="G0", gantry_angle_deg=0.0, couch_angle_deg=0.0, isocenter_mm=center,
                   layers=layers, meterset_mu=total, treatment_machine="Generic")


def _centres(shape: tuple[int, int, int], origin: tuple[float, float, float], spacing: float):
    nz, ny, nx = shape
    z = origin[2] + spacing * np.arange(nz)
    y = origin[1] + spacing * np.arange(ny)
    x = origin[0] + spacing * np.arange(nx)
    return np.meshgrid(z, y, x, indexing="ij")
