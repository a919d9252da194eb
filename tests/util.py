"""Synthetic CT / RTSTRUCT / RTPLAN / RTDOSE for tests: the one fixture module (dicompyler-core's idea).

Everything is built by `orthanc_rt.dicom.builders` (through `phantom.py`);
tests derive variants here instead of building DICOM themselves.
"""
from __future__ import annotations

import copy

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from orthanc_rt.dicom import sop
from orthanc_rt.dicom.models import EnergyLayer, IonBeam, PatientStudy, RangeShifter
from orthanc_rt.dicom.phantom import PhantomCase, water_phantom_case
from orthanc_rt.uids import derive_uid

STUDY = PatientStudy(patient_id="UNIT", patient_name="UNIT^TEST", study_instance_uid=derive_uid("unit", "study"),
                     frame_of_reference_uid=derive_uid("unit", "frame"))


def small_phantom_case(name: str, *, energy_mev: float | None = None) -> PhantomCase:
    """A case cheap enough for integration tests: 3 mm voxels, 14 slices, 15 mm target at 50 mm depth.

    The phantom is 150 mm deep along the beam so up to ~140 MeV stops inside it.
    Each `name` gives its own patient, study and UIDs.
    """
    return water_phantom_case(name, size_mm=(42.0, 150.0, 36.0), spacing_mm=3.0, target_size_mm=15.0,
                              target_depth_mm=50.0, energy_mev=energy_mev, spot_spacing_mm=5.0)


def photon_plan(case: PhantomCase) -> Dataset:
    """The case's plan turned into a photon RT Plan (BeamSequence, RadiationType PHOTON)."""
    plan = _variant(case.plan, "photon")
    plan.SOPClassUID = sop.RT_PLAN
    plan.file_meta.MediaStorageSOPClassUID = sop.RT_PLAN
    beam = Dataset()
    beam.BeamNumber, beam.BeamName, beam.RadiationType, beam.BeamType = 1, "AP", "PHOTON", "STATIC"
    plan.BeamSequence = DicomSequence([beam])
    del plan.IonBeamSequence
    return plan


def plan_without_spots(case: PhantomCase) -> Dataset:
    """The case's plan with every spot weight set to zero."""
    plan = _variant(case.plan, "no-spots")
    for beam in plan.IonBeamSequence:
        for cp in beam.IonControlPointSequence:
            weights = cp.ScanSpotMetersetWeights
            cp.ScanSpotMetersetWeights = 0.0 if isinstance(weights, float) else [0.0] * len(weights)
    return plan


def weights_on_second_control_point(plan: Dataset) -> Dataset:
    """Eclipse-style: each layer's weights on the second control point of its pair, zeros on the first."""
    plan = _variant(plan, "eclipse")
    for beam in plan.IonBeamSequence:
        cps = beam.IonControlPointSequence
        for first, second in zip(cps[0::2], cps[1::2]):
            first.ScanSpotMetersetWeights, second.ScanSpotMetersetWeights = (
                second.ScanSpotMetersetWeights, first.ScanSpotMetersetWeights)
    return plan


def beam(number: int = 1, *, energies=(100.0, 110.0), spots_per_layer: int = 4, mu: float = 0.5,
         gantry: float = 0.0, couch: float = 0.0, range_shifter: bool = False) -> IonBeam:
    """An IonBeam built in code (for builder/reader round trips)."""
    layers = []
    for k, energy in enumerate(energies):
        n = spots_per_layer
        layers.append(EnergyLayer(nominal_energy_mev=energy, spot_x_mm=np.linspace(-10, 10, n) + k,
                                  spot_y_mm=np.linspace(5, -5, n), spot_mu=np.full(n, mu) * (k + 1),
                                  range_shifter_in=range_shifter))
    shifters = [RangeShifter(number=1, identifier="RS_7.5cm", type="BINARY", water_equivalent_thickness_mm=74.1,
                             isocenter_to_range_shifter_distance_mm=300.0)] if range_shifter else []
    return IonBeam(number=number, name=f"B{number}", gantry_angle_deg=gantry, couch_angle_deg=couch,
                   isocenter_mm=(1.0, -2.0, 3.0), layers=layers, meterset_mu=float(sum(l.mu for l in layers)),
                   snout_position_mm=421.0, range_shifters=shifters, treatment_machine="Generic")


def _variant(plan: Dataset, tag: str) -> Dataset:
    variant = copy.deepcopy(plan)
    uid = derive_uid(str(plan.SOPInstanceUID), tag)
    variant.SOPInstanceUID = uid
    variant.file_meta.MediaStorageSOPInstanceUID = uid
    return variant
