"""build_photon_plan and the leaf sequencing under it: what the RT Plan says, and that its segments deliver the weights.

The delivered weights are read back from the DICOM attributes alone (jaws,
leaf boundaries, leaf tips, cumulative meterset weights), independently of
`orthanc_rt.dicom.leaf_sequencing`.
"""
from __future__ import annotations

import dataclasses
from datetime import datetime

import numpy as np
import pytest

from orthanc_rt.dicom import sop
from orthanc_rt.dicom.leaf_sequencing import delivered, sequence
from orthanc_rt.dicom.photon_plan import build_photon_plan
from orthanc_rt.dicom.serialize import from_bytes, to_bytes
from orthanc_rt.dicom.uids import derive_uid
from orthanc_rt.errors import DicomInputError, SequencingError
from tests.support import cases as util

WHEN = datetime(2025, 2, 3, 4, 5, 6)


def _plan(beams, **kwargs):
    return build_photon_plan(util.STUDY, beams, sop_instance_uid=derive_uid("photon-plan", "sop"),
                             series_instance_uid=derive_uid("photon-plan", "series"), label="IMRT",
                             fractions_planned=kwargs.pop("fractions_planned", 5), created=WHEN, **kwargs)


def delivered_from_dicom(beam_item, x_mm: np.ndarray, y_mm: np.ndarray) -> np.ndarray:
    """Weight each bixel centre gets: sum over control-point pairs of the meterset through jaws and MLC."""
    devices = {d.RTBeamLimitingDeviceType: d for d in beam_item.BeamLimitingDeviceSequence}
    boundaries = np.array([float(v) for v in devices["MLCX"].LeafPositionBoundaries])
    pairs = int(devices["MLCX"].NumberOfLeafJawPairs)
    first = {p.RTBeamLimitingDeviceType: [float(v) for v in p.LeafJawPositions]
             for p in beam_item.ControlPointSequence[0].BeamLimitingDevicePositionSequence}
    (x1, x2), (y1, y2) = first["ASYMX"], first["ASYMY"]
    pair = np.searchsorted(boundaries, y_mm) - 1
    total = np.zeros(len(x_mm))
    cps = beam_item.ControlPointSequence
    for start, stop in zip(cps[0::2], cps[1::2]):
        leaves = {p.RTBeamLimitingDeviceType: [float(v) for v in p.LeafJawPositions]
                  for p in start.BeamLimitingDevicePositionSequence}["MLCX"]
        left, right = np.array(leaves[:pairs]), np.array(leaves[pairs:])
        open_ = (left[pair] < x_mm) & (x_mm < right[pair]) & (x1 < x_mm) & (x_mm < x2) & (y1 < y_mm) & (y_mm < y2)
        total += (float(stop.CumulativeMetersetWeight) - float(start.CumulativeMetersetWeight)) * open_
    return total


def test_photon_plan_is_an_rt_plan_whose_segments_deliver_the_beamlet_weights():
    beams = [util.photon_beam(1, gantry=0.0, seed=1), util.photon_beam(2, gantry=270.0, seed=2, shape=(7, 4),
                                                                       offset_mm=(2.5, -2.5))]
    ds = from_bytes(to_bytes(_plan(beams, referenced_structure_set_uid=derive_uid("photon-plan", "rs"),
                                   weight_unit="CCC relative fluence")))
    assert ds.SOPClassUID == sop.RT_PLAN and ds.Modality == "RTPLAN"
    assert ds.RTPlanGeometry == "PATIENT"
    assert "not calibrated monitor units" in ds.RTPlanDescription
    group = ds.FractionGroupSequence[0]
    assert (group.NumberOfFractionsPlanned, group.NumberOfBeams) == (5, 2)
    for beam, item, reference in zip(beams, ds.BeamSequence, group.ReferencedBeamSequence):
        assert (item.RadiationType, item.BeamType, item.PrimaryDosimeterUnit) == ("PHOTON", "DYNAMIC", "MU")
        assert float(item.SourceAxisDistance) == 1000.0
        first = item.ControlPointSequence[0]
        assert float(first.GantryAngle) == beam.gantry_angle_deg
        assert [float(v) for v in first.IsocenterPosition] == [1.0, -2.0, 3.0]
        assert float(first.NominalBeamEnergy) == 6.0
        assert item.NumberOfControlPoints == len(item.ControlPointSequence) and item.NumberOfControlPoints % 2 == 0
        assert float(item.FinalCumulativeMetersetWeight) == pytest.approx(float(reference.BeamMeterset))
        assert float(item.ControlPointSequence[-1].CumulativeMetersetWeight) == \
            pytest.approx(float(item.FinalCumulativeMetersetWeight))
        got = delivered_from_dicom(item, beam.beamlet_x_mm, beam.beamlet_y_mm)
        assert np.allclose(got, beam.beamlet_weight, rtol=1e-9, atol=1e-9)
        # Leaf pairs are one bixel high and cover the ±200 mm bank.
        boundaries = np.array([float(v) for v in item.BeamLimitingDeviceSequence[2].LeafPositionBoundaries])
        assert np.allclose(np.diff(boundaries), 5.0) and boundaries[0] <= -200.0 and boundaries[-1] >= 200.0


def test_without_a_structure_set_the_plan_geometry_is_the_treatment_device_and_mu_need_no_note():
    ds = _plan([util.photon_beam()])
    assert ds.RTPlanGeometry == "TREATMENT_DEVICE" and "RTPlanDescription" not in ds


@pytest.mark.parametrize("change, match", [
    (dict(beamlet_weight=-np.ones(40)), r"beam 1: negative beamlet weight"),
    (dict(beamlet_weight=np.zeros(40)), r"beam 1: no beamlet has a positive weight"),
    (dict(beamlet_x_mm=np.linspace(0.0, 1.0, 40)), r"beam 1: beamlet X positions are not on a 5 mm grid"),
    (dict(beamlet_y_mm=np.full(40, 300.0)), r"beam 1: beamlets span Y 297\.5 to 302\.5 mm, beyond the MLC's ±200 mm"),
    (dict(nominal_energy_mv=0.0), r"beam 1: nominal energy 0 MV is outside \(0, 25\]"),
])
def test_bad_beams_are_refused_naming_the_beam(change, match):
    with pytest.raises(DicomInputError, match=match):
        _plan([dataclasses.replace(util.photon_beam(), **change)])


def test_duplicate_beam_numbers_and_fractions_are_refused():
    with pytest.raises(DicomInputError, match=r"beam numbers must be distinct and positive, not \[1, 1\]"):
        _plan([util.photon_beam(1), util.photon_beam(1)])
    with pytest.raises(DicomInputError, match=r"fractions_planned must be a whole number of at least 1, not 0"):
        _plan([util.photon_beam()], fractions_planned=0)


def test_sweep_needs_no_more_segments_than_leaf_events_and_keeps_leaves_moving_one_way():
    beam = util.photon_beam(shape=(6, 9), seed=5)
    sequenced = sequence(beam.beamlet_x_mm, beam.beamlet_y_mm, beam.beamlet_weight, beam.beamlet_size_mm)
    assert np.allclose(delivered(sequenced, beam.beamlet_x_mm, beam.beamlet_y_mm), beam.beamlet_weight)
    assert sequenced.meterset == pytest.approx(sum(s.meterset for s in sequenced.segments))
    lefts = np.array([s.left_mm for s in sequenced.segments])
    rights = np.array([s.right_mm for s in sequenced.segments])
    assert np.all(lefts <= rights)
    assert len(sequenced.segments) <= 2 * np.count_nonzero(beam.beamlet_weight)
    # Unidirectional: within each open row the tips only move towards +X from segment to segment.
    for row in range(lefts.shape[1]):
        opened = rights[:, row] > lefts[:, row]
        assert np.all(np.diff(lefts[opened, row]) >= 0) and np.all(np.diff(rights[opened, row]) >= 0)


def test_two_beamlets_on_one_bixel_are_refused():
    with pytest.raises(SequencingError, match=r"two beamlets at X 0 mm, Y 0 mm"):
        sequence(np.zeros(2), np.zeros(2), np.ones(2), (5.0, 5.0))
