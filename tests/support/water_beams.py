"""Water phantoms and single pencil beams for the physics tests (real MCsquare on small grids)."""
from __future__ import annotations

import numpy as np

from orthanc_rt.dicom.models import CtVolume, DoseGrid, EnergyLayer, IonBeam, IonPlan, RangeShifter

FRAME = "1.2.826.0.1.3680043.8.498.1"


def water_ct(shape_zyx: tuple[int, int, int], origin_mm, spacing_mm, hu: float = 0.0) -> CtVolume:
    return CtVolume(hu=np.full(shape_zyx, hu, dtype=np.int16), origin_mm=tuple(origin_mm),
                    spacing_mm=tuple(spacing_mm), frame_of_reference_uid=FRAME)


def layer(energy_mev: float, spots: list[tuple[float, float, float]], *, shifter_in: bool = False) -> EnergyLayer:
    x, y, mu = (np.array(v, dtype=float) for v in zip(*spots))
    return EnergyLayer(nominal_energy_mev=energy_mev, spot_x_mm=x, spot_y_mm=y, spot_mu=mu,
                       range_shifter_in=shifter_in)


def single_beam_plan(layers: list[EnergyLayer], *, gantry: float = 0.0, couch: float = 0.0,
                     isocenter=(0.0, 0.0, 0.0), fractions: int = 1, radiation: str = "PROTON",
                     range_shifters: list[RangeShifter] | None = None) -> IonPlan:
    beam = IonBeam(number=1, name="B1", gantry_angle_deg=gantry, couch_angle_deg=couch,
                   isocenter_mm=tuple(isocenter), layers=layers, meterset_mu=sum(l.mu for l in layers),
                   radiation_type=radiation, range_shifters=range_shifters or [])
    return IonPlan(sop_instance_uid="1.2.3.1", series_instance_uid="1.2.3.2", study_instance_uid="1.2.3.3",
                   frame_of_reference_uid=FRAME, patient_id="PHANTOM", label="test", fractions_planned=fractions,
                   beams=[beam])


def depth_dose_along_y(dose: DoseGrid) -> tuple[np.ndarray, np.ndarray]:
    """Laterally integrated depth dose and voxel-centre y (mm)."""
    idd = dose.dose_gy.astype(np.float64).sum(axis=(0, 2))
    return idd, dose.origin_mm[1] + np.arange(len(idd)) * dose.spacing_mm[1]


def distal_80(idd: np.ndarray, positions: np.ndarray) -> float:
    peak = int(np.argmax(idd))
    level = 0.8 * idd[peak]
    after = peak + int(np.argmax(idd[peak:] < level))
    a, b = after - 1, after
    return float(positions[a] + (level - idd[a]) / (idd[b] - idd[a]) * (positions[b] - positions[a]))
