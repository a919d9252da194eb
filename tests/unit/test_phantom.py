"""The demo/test case generator: geometry, ROIs, plan, determinism."""
from __future__ import annotations

import numpy as np
import pytest

from orthanc_rt.dicom.ct import read_ct_series
from orthanc_rt.dicom.ion_plan import read_ion_plan
from orthanc_rt.dicom.models import RangeShifter
from orthanc_rt.dicom.serialize import from_bytes, to_bytes
from orthanc_rt.ops.phantom import (
    beam_direction,
    energy_for_range_mm,
    range_mm_for_energy,
    single_energy_plan,
    water_phantom_case,
)
from tests.support import cases as util


@pytest.fixture(scope="module")
def demo():
    return water_phantom_case()


def test_demo_case_geometry(demo):
    volume = demo.ct_volume
    # 100 x 120 x 80 mm of water plus one 2 mm voxel of air each side.
    assert volume.shape_zyx == (42, 62, 52) and volume.spacing_mm == (2.0, 2.0, 2.0)
    assert len(demo.ct) == 42 and volume.sop_instance_uids == [ds.SOPInstanceUID for ds in demo.ct]
    assert set(np.unique(volume.hu)) == {-1000.0, 0.0}
    assert volume.hu[0].max() == -1000.0 and volume.hu[:, 0, :].max() == -1000.0  # the air margin
    assert volume.hu[21, 31, 26] == 0.0
    assert demo.external_mask.sum() == 40 * 60 * 50
    np.testing.assert_array_equal(volume.hu == 0.0, demo.external_mask)


def test_target_is_a_box_at_the_requested_depth(demo):
    # 60 mm below the anterior surface (y = -60): centre y = 0; a 30 mm box of 2 mm voxels (centres on the edge count).
    assert demo.target_center_mm == (0.0, 0.0, 0.0)
    z, y, x = np.nonzero(demo.target_mask)
    centres = [demo.ct_volume.origin_mm[i] + demo.ct_volume.spacing_mm[i] * idx for i, idx in enumerate((x, y, z))]
    for axis in centres:
        assert axis.min() == -15.0 and axis.max() == 15.0
    assert demo.target_mask.sum() == 16**3


def test_rois_and_references(demo):
    rois = {roi.ROINumber: roi.ROIName for roi in demo.rtstruct.StructureSetROISequence}
    kinds = {o.ReferencedROINumber: o.RTROIInterpretedType for o in demo.rtstruct.RTROIObservationsSequence}
    assert {rois[n]: kinds[n] for n in rois} == {"TargetVolume": "PTV", "External": "EXTERNAL"}
    plan = read_ion_plan(demo.plan)
    assert plan.referenced_structure_set_uid == demo.rtstruct.SOPInstanceUID
    assert plan.frame_of_reference_uid == demo.ct_volume.frame_of_reference_uid == demo.study.frame_of_reference_uid
    assert plan.study_instance_uid == demo.ct[0].StudyInstanceUID == demo.rtstruct.StudyInstanceUID
    series = demo.rtstruct.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0]
    assert series.RTReferencedSeriesSequence[0].SeriesInstanceUID == demo.ct[0].SeriesInstanceUID


def test_plan_layers_cover_the_target_depth_and_spots_its_width(demo):
    plan = read_ion_plan(demo.plan)
    (beam,) = plan.beams
    assert beam.gantry_angle_deg == 0.0 and beam.isocenter_mm == demo.target_center_mm
    ranges = sorted(range_mm_for_energy(e) for e in plan.energies_mev)
    # The target spans 45 to 75 mm of water on the beam axis; layers 5 mm apart in range.
    assert ranges[0] == pytest.approx(45.0, abs=0.1) and ranges[-1] == pytest.approx(75.0, abs=0.1)
    assert np.diff(ranges) == pytest.approx([5.0] * 6, abs=0.1)
    distal = beam.layers[0]
    assert distal.nominal_energy_mev == max(plan.energies_mev) and distal.mu > beam.layers[1].mu
    assert sorted(set(distal.spot_x_mm)) == [-15.0, -10.0, -5.0, 0.0, 5.0, 10.0, 15.0]
    assert sorted(set(distal.spot_y_mm)) == [-15.0, -10.0, -5.0, 0.0, 5.0, 10.0, 15.0]
    assert plan.fractions_planned == 1


def test_beams_at_other_gantry_angles_reach_the_target_through_their_own_depth():
    case = water_phantom_case("lateral", size_mm=(80.0, 120.0, 40.0), target_size_mm=20.0, target_depth_mm=60.0,
                              spacing_mm=4.0, gantry_angles_deg=(0.0, 90.0))
    plan = read_ion_plan(case.plan)
    front, side = plan.beams
    assert side.gantry_angle_deg == 90.0
    # Gantry 0 crosses 60 mm of water to the isocentre, gantry 90 (from +x) 40 mm.
    assert range_mm_for_energy(front.layers[0].nominal_energy_mev) == pytest.approx(70.0, abs=0.1)
    assert range_mm_for_energy(side.layers[0].nominal_energy_mev) == pytest.approx(50.0, abs=0.1)


def test_beam_direction_follows_iec_for_head_first_supine():
    np.testing.assert_allclose(beam_direction(0.0), [0.0, 1.0, 0.0], atol=1e-12)  # anterior to posterior
    np.testing.assert_allclose(beam_direction(90.0), [-1.0, 0.0, 0.0], atol=1e-12)  # from the patient's left
    np.testing.assert_allclose(beam_direction(270.0), [1.0, 0.0, 0.0], atol=1e-12)


def test_bragg_kleeman_rule_is_consistent_and_near_pstar():
    assert range_mm_for_energy(energy_for_range_mm(123.0)) == pytest.approx(123.0)
    # NIST PSTAR CSDA range of 100 MeV protons in water: 77.18 mm.
    assert range_mm_for_energy(100.0) == pytest.approx(77.18, abs=2.0)


def test_cases_are_deterministic_per_name():
    a, b = util.small_phantom_case("same"), util.small_phantom_case("same")
    other = util.small_phantom_case("other")
    assert [to_bytes(ds) for ds in [*a.ct, a.rtstruct, a.plan]] == [to_bytes(ds) for ds in [*b.ct, b.rtstruct, b.plan]]
    assert a.study.study_instance_uid != other.study.study_instance_uid
    assert a.plan.SOPInstanceUID != other.plan.SOPInstanceUID
    assert a.study.patient_id == "ORT-same"


def test_small_case_single_energy_and_write_case(tmp_path):
    case = util.small_phantom_case("files", energy_mev=120.0)
    plan = read_ion_plan(case.plan)
    assert plan.energies_mev == [120.0] and len(plan.beams[0].layers) == 1
    assert case.ct_volume.shape_zyx == (14, 52, 16)
    paths = util.write_case(tmp_path / "case", case)
    assert len(paths) == len(case.ct) + 2 and all(p.stat().st_size > 0 for p in paths)
    volume = read_ct_series([from_bytes(p.read_bytes()) for p in paths if p.name.startswith("CT_")])
    np.testing.assert_array_equal(volume.hu, case.ct_volume.hu)


def test_single_energy_plan_for_physics_checks():
    study = util.small_phantom_case("physics").study
    shifter = RangeShifter(number=1, identifier="RS", water_equivalent_thickness_mm=40.0)
    ds = single_energy_plan(study, "physics", energy_mev=100.0, fractions=2, range_shifter=shifter)
    assert isinstance(ds.IonBeamSequence[0].IonControlPointSequence[0].ScanSpotMetersetWeights, float)
    plan = read_ion_plan(ds)
    (beam,) = plan.beams
    (layer,) = beam.layers
    assert layer.nominal_energy_mev == 100.0 and list(layer.spot_mu) == [1.0] and layer.range_shifter_in
    assert list(layer.spot_x_mm) == [0.0] and list(layer.spot_y_mm) == [0.0]
    assert plan.fractions_planned == 2 and beam.range_shifters[0].identifier == "RS"
    grid = single_energy_plan(study, "grid", energy_mev=90.0, spots_xy_mm=[(-5, 0), (0, 0), (5, 0)], mu_per_spot=2.0)
    assert read_ion_plan(grid).beams[0].layers[0].mu == 6.0


def test_a_target_outside_the_water_is_refused():
    with pytest.raises(ValueError, match="does not fit"):
        water_phantom_case("bad", size_mm=(60.0, 60.0, 60.0), target_depth_mm=55.0, target_size_mm=20.0)
