"""The body on a dose grid, the dose restricted to it, and the dose job's inputs around it:
the CT found by frame of reference when the plan's RTSTRUCT is missing, MCsquare's uncertainty, the switches."""
from __future__ import annotations

import numpy as np
import pytest

from orthanc_rt.analysis.body import (
    CROP_MARGIN_VOXELS,
    CROP_THRESHOLD_FRACTION,
    CT_BODY_SOURCE,
    BodyMask,
    body_mask_from_ct,
    body_on_grid,
    body_roi,
    body_structure_set,
    resample_nearest,
    restrict_to_body,
)
from orthanc_rt.dicom.ct import build_ct_series
from orthanc_rt.dicom.models import CtVolume, DoseGrid
from orthanc_rt.dicom.rtstruct import RoiSpec, build_rtstruct, read_structure_set
from orthanc_rt.errors import DicomInputError, InputNotReady, ValidationError
from orthanc_rt.ops.phantom import CASE_DATETIME, case_study, case_uid, patient_like_case
from orthanc_rt.pacs.inputs import locate_plan_ct
from orthanc_rt.records import jobs
from orthanc_rt.scheduling.params import dose_params
from orthanc_rt.settings import AutoDose
from tests.support.fake_orthanc import FakeOrthanc, orthanc_id
from worker.engines import mcsquare


def _ct(hu: np.ndarray, spacing=(2.0, 2.0, 3.0)) -> CtVolume:
    nz, ny, nx = hu.shape
    origin = tuple(-n * s / 2 + s / 2 for n, s in zip((nx, ny, nz), spacing))
    return CtVolume(hu=hu.astype(np.float32), origin_mm=origin, spacing_mm=spacing, frame_of_reference_uid="1.2.3")


def _grid(ct: CtVolume, dose: np.ndarray | None = None) -> DoseGrid:
    return DoseGrid(dose_gy=np.zeros(ct.shape_zyx, np.float32) if dose is None else dose,
                    origin_mm=ct.origin_mm, spacing_mm=ct.spacing_mm, frame_of_reference_uid=ct.frame_of_reference_uid)


@pytest.fixture(scope="module")
def torso():
    """A cylinder of tissue in air with a gas pocket inside, a couch plate below it (apart) and a stray blob."""
    nz, ny, nx = 8, 40, 50
    z, y, x = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    body = (x - 25) ** 2 / 18**2 + (y - 18) ** 2 / 12**2 <= 1.0
    gas = (x - 25) ** 2 + (y - 18) ** 2 <= 3**2
    couch = (y >= 33) & (y <= 34) & (x >= 5) & (x <= 45)
    blob = (x <= 2) & (y <= 2)
    hu = np.full((nz, ny, nx), -1000.0)
    hu[body] = 30.0
    hu[gas] = -950.0
    hu[couch] = 200.0
    hu[blob] = 0.0
    return _ct(hu), body, gas, couch


def test_ct_body_mask_keeps_internal_gas_and_drops_air_couch_and_strays(torso):
    ct, body, gas, couch = torso
    mask = body_mask_from_ct(ct)
    np.testing.assert_array_equal(mask, body)
    assert mask[gas].all() and not mask[couch].any() and not mask[:, 0, 0].any()


def test_ct_without_anything_above_the_threshold_is_refused():
    with pytest.raises(DicomInputError, match="no voxel above -500"):
        body_mask_from_ct(_ct(np.full((2, 4, 4), -1000.0)))


def test_external_roi_is_preferred_over_the_ct(torso):
    ct, body, _, _ = torso
    # An External ROI smaller than the CT's body: if it is used, the mask is the ROI's, not the CT's.
    external = body.copy()
    external[:, :, :20] = False
    structure_set = _structure_set(ct, {"External": (external, "EXTERNAL"), "Target": (body & ~external, "PTV")})
    grid = _grid(ct)
    found = body_on_grid(ct, grid, structure_set)
    np.testing.assert_array_equal(found.mask, external)
    assert found.source == f"ROI 'External' of RTSTRUCT {structure_set.sop_instance_uid}"
    assert found.label == "ROI External"
    without = body_on_grid(ct, grid, None)
    assert without.source == CT_BODY_SOURCE and without.label == "CT body mask"
    np.testing.assert_array_equal(without.mask, body)


def test_body_roi_by_type_then_by_name(torso):
    ct, body, _, _ = torso
    inner = body.copy()
    inner[:, :, :25] = False
    by_name = _structure_set(ct, {"Prostate": (inner, "ORGAN"), "BODY": (body, "ORGAN")})
    assert body_roi(by_name).name == "BODY"
    both = _structure_set(ct, {"body": (inner, "ORGAN"), "Skin": (body, "EXTERNAL")})
    assert body_roi(both).name == "Skin"
    assert body_roi(_structure_set(ct, {"Prostate": (inner, "ORGAN")})) is None


def test_masks_resample_to_a_coarser_grid(torso):
    ct, body, _, _ = torso
    coarse = DoseGrid(dose_gy=np.zeros((4, 20, 25), np.float32), origin_mm=(-48.0, -38.0, -9.0),
                      spacing_mm=(4.0, 4.0, 6.0), frame_of_reference_uid="1.2.3")
    mask = resample_nearest(body, ct, coarse)
    assert mask.shape == (4, 20, 25)
    # Each coarse centre falls on a CT voxel centre offset by 0 or 1: compare with the CT mask there.
    for k, j, i in [(0, 9, 12), (2, 0, 0), (3, 19, 24), (1, 9, 2)]:
        x, y, z = (o + s * n for o, s, n in zip(coarse.origin_mm, coarse.spacing_mm, (i, j, k)))
        ci, cj, ck = (int(round((p - o) / s)) for p, o, s in zip((x, y, z), ct.origin_mm, ct.spacing_mm))
        assert mask[k, j, i] == body[ck, cj, ci]
    # Beyond the CT, nothing is body.
    outside = DoseGrid(dose_gy=np.zeros((1, 1, 2), np.float32), origin_mm=(0.0, 0.0, 500.0),
                       spacing_mm=(2.0, 2.0, 3.0), frame_of_reference_uid="1.2.3")
    assert not resample_nearest(body, ct, outside).any()


def test_restriction_zeroes_air_reports_both_maxima_and_crops_with_a_margin(torso):
    ct, body, gas, _ = torso
    rng = np.random.default_rng(1)
    dose = np.zeros(ct.shape_zyx, np.float32)
    dose[2:6, 10:20, 15:30] = 2.0 + rng.random((4, 10, 15)).astype(np.float32)  # the field, in the body
    dose[~body] = rng.random(int((~body).sum())).astype(np.float32) * 0.004  # noise in air everywhere
    dose[0, 0, 0] = 372.0  # the corner voxel of the motivating case
    mask = BodyMask(mask=body, source="test body", label="test")
    result = restrict_to_body(_grid(ct, dose), mask)
    stored = result.grid.dose_gy
    assert result.dose_max_gy == pytest.approx(float(dose[body].max())) == pytest.approx(float(stored.max()))
    assert result.dose_max_outside_body_gy == pytest.approx(372.0)
    assert result.restricted_to == "test body" and result.cropped
    assert result.comment == "restricted to test; grid cropped to dose region"
    # The box of body voxels above the threshold (here: exactly the field), plus the margin, clipped to the grid.
    region = body & (dose > CROP_THRESHOLD_FRACTION * float(dose[body].max()))
    lows = [int(np.flatnonzero(region.any(axis=tuple(a for a in range(3) if a != axis)))[0]) for axis in range(3)]
    highs = [int(np.flatnonzero(region.any(axis=tuple(a for a in range(3) if a != axis)))[-1]) for axis in range(3)]
    expected = tuple(min(h + CROP_MARGIN_VOXELS, n - 1) - max(lo - CROP_MARGIN_VOXELS, 0) + 1
                     for lo, h, n in zip(lows, highs, dose.shape))
    assert result.shape_after == expected and result.shape_before == dose.shape
    origin = tuple(o + s * max(lo - CROP_MARGIN_VOXELS, 0)
                   for o, s, lo in zip(ct.origin_mm, ct.spacing_mm, lows[::-1]))
    assert result.grid.origin_mm == pytest.approx(origin)
    # Every stored voxel holds the computed dose where it is body, 0 elsewhere.
    z0, y0, x0 = (max(lo - CROP_MARGIN_VOXELS, 0) for lo in lows)
    nz, ny, nx = stored.shape
    window = (slice(z0, z0 + nz), slice(y0, y0 + ny), slice(x0, x0 + nx))
    np.testing.assert_array_equal(stored, np.where(body[window], dose[window], 0.0))
    assert not stored[~body[window]].any()


def test_restriction_and_cropping_can_be_turned_off(torso):
    ct, body, _, _ = torso
    dose = np.zeros(ct.shape_zyx, np.float32)
    dose[3, 15, 20] = 1.5
    dose[0, 0, 0] = 9.0
    mask = BodyMask(mask=body, source="b", label="b")
    kept = restrict_to_body(_grid(ct, dose), mask, crop=False)
    assert kept.grid.dose_gy.shape == dose.shape and kept.grid.origin_mm == ct.origin_mm
    assert kept.grid.dose_gy[0, 0, 0] == 0.0 and kept.comment == "restricted to b"
    raw = restrict_to_body(_grid(ct, dose), None, crop=False)
    np.testing.assert_array_equal(raw.grid.dose_gy, dose)
    assert raw.restricted_to is None and raw.dose_max_outside_body_gy is None and raw.dose_max_gy == 9.0
    assert raw.comment == ""


def test_body_structure_set_prefers_the_plans_then_the_newest_with_a_body():
    case = patient_like_case("body-lookup")
    orthanc = FakeOrthanc([*case.ct, case.rtstruct])
    study_id = orthanc_id(case.study.patient_id, case.study.study_instance_uid)
    found = body_structure_set(orthanc, study_id, case.study.frame_of_reference_uid,
                               preferred_uid=str(case.rtstruct.SOPInstanceUID))
    assert found is not None and found.sop_instance_uid == case.rtstruct.SOPInstanceUID
    assert body_roi(found).name == "External"
    assert body_structure_set(orthanc, study_id, "9.9.9") is None  # another frame of reference


def test_plan_ct_is_found_by_frame_of_reference_when_its_rtstruct_is_missing():
    case = patient_like_case("missing-rtstruct")
    orthanc = FakeOrthanc(case.ct)  # the CT, not the RTSTRUCT the plan names
    study_id = orthanc_id(case.study.patient_id, case.study.study_instance_uid)
    ref = locate_plan_ct(orthanc, orthanc_study_id=study_id, frame_of_reference_uid=case.study.frame_of_reference_uid,
                         structure_set_uid=str(case.rtstruct.SOPInstanceUID))
    assert ref.series_instance_uid == case.ct[0].SeriesInstanceUID and len(ref.instance_ids) == len(case.ct)
    assert ref.structure_set_missing
    assert ref.found_by == (f"frame of reference (the RTSTRUCT {case.rtstruct.SOPInstanceUID} the plan names "
                            "is not in Orthanc)")
    # Still arriving: wait.
    orthanc.arriving.add(ref.orthanc_id)
    with pytest.raises(InputNotReady, match="still arriving"):
        locate_plan_ct(orthanc, orthanc_study_id=study_id, frame_of_reference_uid=case.study.frame_of_reference_uid,
                       structure_set_uid=str(case.rtstruct.SOPInstanceUID))
    # Neither the RTSTRUCT nor a CT on the frame: wait, saying for what.
    with pytest.raises(InputNotReady, match="RTSTRUCT .* not in Orthanc nor a CT series with FrameOfReferenceUID"):
        locate_plan_ct(orthanc, orthanc_study_id=study_id, frame_of_reference_uid="9.9.9",
                       structure_set_uid=str(case.rtstruct.SOPInstanceUID))


def test_plan_ct_found_through_its_rtstruct_says_so():
    case = patient_like_case("with-rtstruct")
    orthanc = FakeOrthanc([*case.ct, case.rtstruct])
    study_id = orthanc_id(case.study.patient_id, case.study.study_instance_uid)
    ref = locate_plan_ct(orthanc, orthanc_study_id=study_id, frame_of_reference_uid=case.study.frame_of_reference_uid,
                         structure_set_uid=str(case.rtstruct.SOPInstanceUID))
    assert not ref.structure_set_missing and ref.found_by == f"the plan's RTSTRUCT {case.rtstruct.SOPInstanceUID}"


def test_mcsquare_uncertainty_is_the_last_one_its_log_reports(tmp_path):
    folder = mcsquare.JobFolder.at(tmp_path)
    assert mcsquare.stat_uncertainty_percent(folder) is None  # no run, no log
    folder.log.write_text("Simulation started\n 10.0 % \n 50.0 % (stat uncertainty: 3.70 %) \n"
                          " 90.0 % (stat uncertainty: 3.00 %) \n 100.0 % (stat uncertainty: 2.87 %) \n\n"
                          "Nbr primaries simulated: 1000000\n")
    assert mcsquare.stat_uncertainty_percent(folder) == 2.87
    folder.log.write_text(" 10.0 % \n 20.0 % \n")  # stopped before the 5th batch
    assert mcsquare.stat_uncertainty_percent(folder) is None


def test_the_body_switches_do_not_change_the_ids_of_default_requests():
    defaults = AutoDose(primaries=50_000, scoring_spacing_mm=None, wait_for_ct_seconds=60)
    plain = dose_params({}, defaults)
    assert plain.restrict_to_body and plain.crop_grid
    explicit = dose_params({"restrict_to_body": True, "crop_grid": True}, defaults)
    # The id a default request had before the switches existed: the identity of primaries and spacing only.
    before = jobs.job_id("dose", "1.2.3", params={"primaries": 50_000, "scoring_spacing_mm": None})
    assert jobs.job_id("dose", "1.2.3", params=plain.identity()) == before
    assert jobs.job_id("dose", "1.2.3", params=explicit.identity()) == before
    raw = dose_params({"restrict_to_body": False}, defaults)
    uncropped = dose_params({"crop_grid": False}, defaults)
    ids = {jobs.job_id("dose", "1.2.3", params=p.identity()) for p in (plain, raw, uncropped)}
    assert len(ids) == 3 and not raw.restrict_to_body and raw.crop_grid
    with pytest.raises(ValidationError, match="crop_grid.*true or false"):
        dose_params({"crop_grid": "no"}, defaults)


def _structure_set(ct: CtVolume, rois: dict[str, tuple[np.ndarray, str]]):
    study = case_study("body-unit")
    volume = CtVolume(hu=ct.hu, origin_mm=ct.origin_mm, spacing_mm=ct.spacing_mm,
                      frame_of_reference_uid=study.frame_of_reference_uid)
    series = build_ct_series(volume, study, series_instance_uid=case_uid("body-unit", "ct"), created=CASE_DATETIME)
    ds = build_rtstruct(series, study, [RoiSpec(name, mask, kind) for name, (mask, kind) in rois.items()],
                        series_instance_uid=case_uid("body-unit", "ss-series"),
                        sop_instance_uid=case_uid("body-unit", "ss", *rois), label="unit", created=CASE_DATETIME)
    return read_structure_set(ds)
