"""An optimised OpenTPS ProtonPlan as our plain IonPlan (the inverse of `dose_engine.to_opentps_plan`).

The IonPlan is what gets exported (`build_ion_plan`) and what the final dose
is computed from, so the stored RTPLAN and the planned dose are one object.
OpenTPS keeps MU per spot of one fraction (`spotMUs`), which is also our
`EnergyLayer.spot_mu`; spot positions are IEC gantry x, y at the isocentre in
both. Spots with zero MU are dropped, and so are layers left without spots.
"""
from __future__ import annotations

import numpy as np
from opentps.core.data.plan import ProtonPlan

from orthanc_rt.dicom.models import EnergyLayer, IonBeam, IonPlan


def from_opentps_plan(plan: ProtonPlan, *, sop_instance_uid: str, series_instance_uid: str,
                      study_instance_uid: str, frame_of_reference_uid: str, patient_id: str = "",
                      label: str = "IMPT", name: str = "", treatment_machine: str = "") -> IonPlan:
    beams = []
    for number, beam in enumerate(plan, start=1):
        layers = []
        for layer in beam:
            mu = np.asarray(layer.spotMUs, dtype=np.float64)
            keep = mu > 0
            if not np.any(keep):
                continue
            layers.append(EnergyLayer(nominal_energy_mev=float(layer.nominalEnergy),
                                      spot_x_mm=np.asarray(layer.spotX, dtype=np.float64)[keep],
                                      spot_y_mm=np.asarray(layer.spotY, dtype=np.float64)[keep],
                                      spot_mu=mu[keep], number_of_paintings=int(layer.numberOfPaintings or 1)))
        if not layers:
            continue
        beams.append(IonBeam(number=number, name=(beam.name or f"B{number}")[:16],
                             gantry_angle_deg=float(beam.gantryAngle), couch_angle_deg=float(beam.couchAngle),
                             isocenter_mm=tuple(float(v) for v in beam.isocenterPosition), layers=layers,
                             meterset_mu=float(sum(layer.mu for layer in layers)),
                             treatment_machine=treatment_machine))
    return IonPlan(sop_instance_uid=sop_instance_uid, series_instance_uid=series_instance_uid,
                   study_instance_uid=study_instance_uid, frame_of_reference_uid=frame_of_reference_uid,
                   patient_id=patient_id, label=label, fractions_planned=int(plan.numberOfFractionsPlanned),
                   beams=beams, name=name)
