"""The demo/test case generator: geometry, ROIs, plan, determinism."""
from __future__ import annotations

import numpy as np
import pytest

from orthanc_rt.dicom.ct import read_ct_series
from orthanc_rt.dicom.ion_plan import read_ion_plan
from orthanc_rt.dicom.models import RangeShifter
from orthanc_rt.dicom.rtstruct import read_structure_set
from orthanc_rt.dicom.serialize import from_bytes, to_bytes
from orthanc_rt.ops.phantom import (
    beam_direction,
    energy_for_range_mm,
    patient_like_case,
    range_mm_for_energy,
    single_energy_plan,
    spot_ray_points,
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


@pytest.fixture(scope="module")
def pelvis():
    return patient_like_case("pelvis-unit")


def _voxel_centres_mm(volume):
    nz, ny, nx = volume.shape_zyx
    return [volume.origin_mm[i] + volume.spacing_mm[i] * np.arange(n) for i, n in enumerate((nx, ny, nz))]


def test_patient_like_case_is_a_body_in_air(pelvis):
    volume = pelvis.ct_volume
    assert volume.shape_zyx == (50, 120, 160) and volume.spacing_mm == (2.5, 2.5, 3.0)
    body = pelvis.roi_masks["External"]
    assert np.all(volume.hu[~body] == -1000.0)
    air_fraction = float((~body).mean())
    # A 300 x 200 mm ellipse fills pi/4 * 300 * 200 / (400 * 300) of the 400 x 300 mm field of view.
    assert air_fraction == pytest.approx(1.0 - np.pi / 4 * 300 * 200 / (400 * 300), abs=0.01)
    x, y, _ = _voxel_centres_mm(volume)
    assert volume.hu[25, 60, 0] == -1000.0 and volume.hu[25, 0, 80] == -1000.0
    assert (-150.0 <= x[body.any(axis=(0, 1))]).all() and (x[body.any(axis=(0, 1))] <= 150.0).all()
    assert np.abs(y[body.any(axis=(0, 2))]).max() <= 100.0


def test_patient_like_case_hu_per_structure(pelvis):
    hu, masks = pelvis.ct_volume.hu, pelvis.roi_masks
    assert set(np.unique(hu[masks["PTV"]])) == {40.0}
    assert set(np.unique(hu[masks["Bladder"]])) == {40.0}
    for side in ("L", "R"):
        assert set(np.unique(hu[masks[f"FemoralHead_{side}"]])) == {700.0}
    rectum = np.unique(hu[masks["Rectum"]])
    assert -900.0 in rectum and 40.0 in rectum and (hu[masks["Rectum"]] == -900.0).sum() > 50
    # Pelvic bone outside the femoral heads, fat under the skin, gas only in the rectum.
    heads = masks["FemoralHead_L"] | masks["FemoralHead_R"]
    assert ((hu == 700.0) & ~heads).sum() > 1000
    assert (hu == -100.0).sum() > 10000
    assert np.all(masks["Rectum"][hu == -900.0])


def test_patient_like_rois_touch_but_do_not_overlap(pelvis):
    from scipy import ndimage
    masks = pelvis.roi_masks
    ptv = masks["PTV"]
    grown = ndimage.binary_dilation(ptv)  # one voxel (face neighbours)
    for organ in ("Rectum", "Bladder"):
        assert not (masks[organ] & ptv).any()
        assert (masks[organ] & grown).sum() > 10, organ
    for roi, mask in masks.items():
        assert mask.any() and (roi == "External" or not (mask & ~masks["External"]).any()), roi
    z, y, x = np.nonzero(ptv)
    xs, ys, zs = _voxel_centres_mm(pelvis.ct_volume)
    # Prostate-like: 50-70 mm wide, roughly central; bladder anterior-superior, rectum posterior of it.
    assert 50.0 <= xs[x].max() - xs[x].min() + 2.5 <= 70.0 and abs(xs[x].mean()) < 5.0
    bz, by, _ = np.nonzero(masks["Bladder"])
    rz, ry, _ = np.nonzero(masks["Rectum"])
    assert ys[by].mean() < ys[y].mean() < ys[ry].mean() and zs[bz].mean() > zs[z].mean()


def test_patient_like_rois_and_plan_read_back(pelvis):
    structure_set = read_structure_set(pelvis.rtstruct)
    kinds = {roi.name: roi.interpreted_type for roi in structure_set.rois}
    assert kinds == {"External": "EXTERNAL", "PTV": "PTV", "Rectum": "ORGAN", "Bladder": "ORGAN",
                     "FemoralHead_L": "ORGAN", "FemoralHead_R": "ORGAN"}
    assert structure_set.frame_of_reference_uid == pelvis.ct_volume.frame_of_reference_uid
    plan = read_ion_plan(pelvis.plan)
    assert [b.gantry_angle_deg for b in plan.beams] == [90.0, 270.0] and plan.fractions_planned == 1
    assert 200 <= plan.spot_count <= 2000
    assert plan.referenced_structure_set_uid == pelvis.rtstruct.SOPInstanceUID
    for beam in plan.beams:
        assert beam.isocenter_mm == pelvis.target_center_mm
        # Layers about 6 mm apart in water-equivalent range, the deepest reaching past the PTV's far edge
        # (beyond its 60 mm geometric width plus the bone and fat on the way: more than 150 mm of water).
        ranges = sorted(range_mm_for_energy(e) for e in {layer.nominal_energy_mev for layer in beam.layers})
        assert np.diff(ranges) == pytest.approx([6.0] * (len(ranges) - 1), abs=0.1)
        assert ranges[-1] > 150.0 and ranges[-1] - ranges[0] >= 50.0


def test_patient_like_spots_lie_in_the_ptv_projection(pelvis):
    from scipy import ndimage
    volume = pelvis.ct_volume
    plan = read_ion_plan(pelvis.plan)
    # The PTV grown by the lateral margin (8 mm) and a voxel for the sampling: every spot's ray crosses it.
    grown = ndimage.binary_dilation(pelvis.target_mask, iterations=4)
    distances = np.arange(-250.0, 250.0, 0.5)
    origin, spacing = np.asarray(volume.origin_mm), np.asarray(volume.spacing_mm)
    for beam in plan.beams:
        spots = {(float(x), float(y)) for layer in beam.layers for x, y in zip(layer.spot_x_mm, layer.spot_y_mm)}
        for spot in spots:
            index = np.rint((spot_ray_points(beam, spot, distances) - origin) / spacing).astype(int)[:, ::-1]
            index = index[np.all((index >= 0) & (index < np.asarray(volume.shape_zyx)), axis=1)]
            assert grown[tuple(index.T)].any(), (beam.gantry_angle_deg, spot)
        # And the spots fill the projection: the central ray and rays near the PTV's edges are there.
        assert (0.0, 0.0) in spots and len(spots) > 50


def test_patient_like_case_is_deterministic_and_builds_valid_dicom(pelvis):
    again = patient_like_case("pelvis-unit")
    assert [to_bytes(ds) for ds in [again.rtstruct, again.plan]] == [to_bytes(ds) for ds in
                                                                     [pelvis.rtstruct, pelvis.plan]]
    volume = read_ct_series([from_bytes(to_bytes(ds)) for ds in pelvis.ct])
    np.testing.assert_array_equal(volume.hu, pelvis.ct_volume.hu)
    assert patient_like_case("other", fractions=3).plan.SOPInstanceUID != pelvis.plan.SOPInstanceUID
    assert read_ion_plan(patient_like_case("other", fractions=3).plan).fractions_planned == 3
