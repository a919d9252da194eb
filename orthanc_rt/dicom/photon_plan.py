"""RT Plans (photon): static-gantry step-and-shoot IMRT beams built from beamlet weights.

Only the writing side: the readers accept proton (RT Ion) plans only. The
beamlet weights become MLC segments in `leaf_sequencing`, next to this module.
"""
from __future__ import annotations

from datetime import datetime
from typing import Sequence

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from orthanc_rt.dicom import sop
from orthanc_rt.dicom._common import (
    check_beam_numbers,
    check_isocenter,
    check_plan_header,
    check_text,
    ds_value,
    ds_values,
    plan_dataset,
    seq_item,
)
from orthanc_rt.dicom.ion_plan import MAX_BEAMS
from orthanc_rt.dicom.leaf_sequencing import SequencedBeam, sequence
from orthanc_rt.dicom.models import PatientStudy, PhotonBeam
from orthanc_rt.errors import DicomInputError, SequencingError

_PHOTON_SAD_MM = 1000.0  # the CCC engine's source-axis distance
_MAX_NOMINAL_ENERGY_MV = 25.0


def build_photon_plan(study: PatientStudy, beams: Sequence[PhotonBeam], *, sop_instance_uid: str,
                      series_instance_uid: str, label: str, fractions_planned: int,
                      referenced_structure_set_uid: str | None = None, referenced_dose_uid: str | None = None,
                      plan_name: str = "", weight_unit: str = "MU",
                      series_description: str = "Photon plan (Orthanc-RT)", series_number: int = 3,
                      treatment_machine: str = "", created: datetime | None = None) -> Dataset:
    """An RT Plan of static-gantry step-and-shoot IMRT beams (MLCX), one fraction group.

    Each beam's beamlet weights become MLC segments (`orthanc_rt.dicom.leaf_sequencing`:
    leaf pairs one bixel high aligned with the beamlets, jaws around the open
    bixels). Like OpenTPS' photon segments (leaf pairs with their Y edges and
    X tips, jaws, a meterset each), every segment is a pair of control
    points with the same leaf positions, the second `meterset` further in
    CumulativeMetersetWeight; FinalCumulativeMetersetWeight and BeamMeterset
    are the beam's total. Leaf and jaw positions are at the isocentre plane
    (SAD 1000 mm). When `weight_unit` is not "MU" (the CCC engine's weights
    are relative), RTPlanDescription says so: such a plan documents the
    planned fluence but is not deliverable as is.
    """
    check_plan_header(study, sop_instance_uid, series_instance_uid, label, plan_name, series_description,
                      fractions_planned, referenced_structure_set_uid, referenced_dose_uid)
    sequenced = _check_beams(beams)
    ds = plan_dataset(sop.RT_PLAN, study, sop_instance_uid, series_instance_uid, label, plan_name,
                      series_description, series_number, fractions_planned, created,
                      [(beam.number, plan.meterset) for beam, plan in zip(beams, sequenced)],
                      referenced_structure_set_uid, referenced_dose_uid)
    if weight_unit != "MU":
        ds.RTPlanDescription = (f"Beamlet weights in {weight_unit}, not calibrated monitor units: "
                                "not deliverable as is")[:1024]
    ds.BeamSequence = [_photon_beam(beam, plan, beam.treatment_machine or treatment_machine)
                       for beam, plan in zip(beams, sequenced)]
    ds.ApprovalStatus = "UNAPPROVED"
    return ds


def _check_beams(beams: Sequence[PhotonBeam]) -> list[SequencedBeam]:
    """Checks every beam and sequences its weights into segments (sequencing is what can fail)."""
    check_beam_numbers([beam.number for beam in beams], "photon plan", MAX_BEAMS)
    sequenced = []
    for beam in beams:
        where = f"beam {beam.number}"
        check_isocenter(beam.isocenter_mm, where)
        for name in ("gantry_angle_deg", "couch_angle_deg"):
            if not np.isfinite(getattr(beam, name)):
                raise DicomInputError(f"{where}: {name} must be finite")
        if not 0 < beam.nominal_energy_mv <= _MAX_NOMINAL_ENERGY_MV:
            raise DicomInputError(f"{where}: nominal energy {beam.nominal_energy_mv:g} MV is outside "
                                  f"(0, {_MAX_NOMINAL_ENERGY_MV:g}]")
        check_text(beam.name, f"{where} name", 64)
        try:
            sequenced.append(sequence(beam.beamlet_x_mm, beam.beamlet_y_mm, beam.beamlet_weight,
                                      beam.beamlet_size_mm))
        except SequencingError as exc:
            raise DicomInputError(f"{where}: {exc}") from None
    return sequenced


def _photon_beam(beam: PhotonBeam, plan: SequencedBeam, machine: str) -> Dataset:
    pairs = len(plan.leaf_boundaries_mm) - 1
    entry = seq_item(
        BeamNumber=beam.number, BeamName=(beam.name or f"B{beam.number}")[:64], BeamType="DYNAMIC",
        RadiationType="PHOTON", TreatmentMachineName=machine, PrimaryDosimeterUnit="MU",
        SourceAxisDistance=ds_value(_PHOTON_SAD_MM),
        BeamLimitingDeviceSequence=[
            seq_item(RTBeamLimitingDeviceType="ASYMX", NumberOfLeafJawPairs=1),
            seq_item(RTBeamLimitingDeviceType="ASYMY", NumberOfLeafJawPairs=1),
            seq_item(RTBeamLimitingDeviceType="MLCX", NumberOfLeafJawPairs=pairs,
                     LeafPositionBoundaries=ds_values(plan.leaf_boundaries_mm)),
        ],
        TreatmentDeliveryType="TREATMENT", NumberOfWedges=0, NumberOfCompensators=0, NumberOfBoli=0,
        NumberOfBlocks=0, ReferencedPatientSetupNumber=1,
    )
    control_points = []
    cumulative = 0.0
    for segment in plan.segments:
        # Leaf positions: bank A (the -X leaves, one per pair) then bank B.
        leaves = ds_values(np.concatenate([segment.left_mm, segment.right_mm]))
        for weight in (cumulative, cumulative + segment.meterset):
            cp = seq_item(ControlPointIndex=len(control_points), CumulativeMetersetWeight=ds_value(weight))
            positions = [seq_item(RTBeamLimitingDeviceType="MLCX", LeafJawPositions=leaves)]
            if not control_points:
                cp.NominalBeamEnergy = ds_value(beam.nominal_energy_mv)
                positions = [seq_item(RTBeamLimitingDeviceType="ASYMX", LeafJawPositions=ds_values(plan.jaw_x_mm)),
                             seq_item(RTBeamLimitingDeviceType="ASYMY", LeafJawPositions=ds_values(plan.jaw_y_mm)),
                             *positions]
                cp.GantryAngle = ds_value(beam.gantry_angle_deg % 360.0)
                cp.GantryRotationDirection = "NONE"
                cp.BeamLimitingDeviceAngle = 0
                cp.BeamLimitingDeviceRotationDirection = "NONE"
                cp.PatientSupportAngle = ds_value(beam.couch_angle_deg % 360.0)
                cp.PatientSupportRotationDirection = "NONE"
                cp.TableTopEccentricAngle = 0
                cp.TableTopEccentricRotationDirection = "NONE"
                cp.IsocenterPosition = ds_values(beam.isocenter_mm)
            cp.BeamLimitingDevicePositionSequence = positions
            control_points.append(cp)
        cumulative += segment.meterset
    entry.FinalCumulativeMetersetWeight = ds_value(cumulative)
    entry.NumberOfControlPoints = len(control_points)
    entry.ControlPointSequence = DicomSequence(control_points)
    return entry
