"""What a dose job with LET stores, without MCsquare: the map, the EFFECTIVE RTDOSE, LETd records, refusals."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from pydicom import dcmread

pytest.importorskip("highdicom")

from orthanc_rt.analysis.body import grid_as_volume  # noqa: E402
from orthanc_rt.analysis.roi_masks import structure_masks  # noqa: E402
from orthanc_rt.dicom.dose import read_rtdose  # noqa: E402
from orthanc_rt.dicom.ion_plan import read_ion_plan  # noqa: E402
from orthanc_rt.dicom.models import DoseGrid, LetGrid  # noqa: E402
from orthanc_rt.dicom.parametric_map import read_let_map  # noqa: E402
from orthanc_rt.dicom.rtstruct import read_structure_set  # noqa: E402
from orthanc_rt.dicom.uids import derive_uid  # noqa: E402
from orthanc_rt.errors import DicomInputError  # noqa: E402
from orthanc_rt.records import db  # noqa: E402
from orthanc_rt.records.jobs import Job, JobStore  # noqa: E402
from orthanc_rt.scheduling.queue import Dispatcher  # noqa: E402
from orthanc_rt.settings import Settings  # noqa: E402
from plugin.rest import Request  # noqa: E402
from tests.support.cases import photon_plan, small_phantom_case  # noqa: E402
from tests.support.fake_orthanc import FakeOrthanc  # noqa: E402
from tests.support.routes import make_router  # noqa: E402
from worker.jobs.let_results import let_objects, let_records  # noqa: E402

JOB = "dose-let-unit"


@pytest.fixture(scope="module")
def case():
    return small_phantom_case("let-results")


def _grids(case):
    ct = case.ct_volume
    dose = np.where(case.external_mask, 60.0, 0.0).astype(np.float32)
    dose[case.target_mask] = 66.0
    let = np.where(dose > 0, 2.0, 0.0).astype(np.float32)
    let[case.target_mask] = 4.0
    geometry = dict(origin_mm=ct.origin_mm, spacing_mm=ct.spacing_mm, frame_of_reference_uid=ct.frame_of_reference_uid)
    return DoseGrid(dose_gy=dose, **geometry), LetGrid(let_kev_um=let, threshold_gy=0.66, **geometry)


def test_let_map_and_effective_dose_are_built_with_derived_uids_and_named_models(case):
    dose, let = _grids(case)
    plan = read_ion_plan(case.plan)
    built, kept, notes = let_objects(JOB, {"let": True, "rbe_model": "wedenberg", "alpha_beta_gy": 2.0}, dose, let,
                                     case.ct, case.study, plan.sop_instance_uid, 30, None)
    by_name = {b.name: b for b in built}
    assert set(by_name) == {"letmap", "rtdose-effective"}
    assert by_name["letmap"].sop_instance_uid == derive_uid("orthanc-rt", JOB, "letmap")
    back = read_let_map(dcmread(io.BytesIO(by_name["letmap"].data)))
    np.testing.assert_allclose(back.let_kev_um, let.let_kev_um, atol=4.0 / 65000)
    effective_ds = dcmread(io.BytesIO(by_name["rtdose-effective"].data))
    assert effective_ds.DoseType == "EFFECTIVE"
    assert "Wedenberg 2013, a/b 2 Gy" in effective_ds.SeriesDescription and effective_ds.DoseComment
    effective = read_rtdose(effective_ds)
    # 66 Gy in 30 fractions at 4 keV/um, a/b 2: RBEmax 1.868, RBEmin 1 -> RBE 1.2566 (hand: LQ formula)
    d, ab, rmax = 2.2, 2.0, 1 + 0.434 * 4 / 2
    expected = (np.sqrt(ab ** 2 + 4 * d * ab * rmax + 4 * d ** 2) - ab) / (2 * d)
    assert float(effective.dose_gy.max()) == pytest.approx(66.0 * expected, rel=1e-5)
    assert notes["rbe"]["model"] == "wedenberg" and kept is not None


def test_per_roi_alpha_beta_naming_an_unknown_roi_fails_with_the_rois_there_are(case):
    dose, let = _grids(case)
    structure_set = read_structure_set(case.rtstruct)
    with pytest.raises(DicomInputError, match="names ROI 'Brainstem'.*it has: "):
        let_objects(JOB, {"let": True, "rbe_model": "mcnamara", "alpha_beta_by_roi": {"Brainstem": 2.0}}, dose, let,
                    case.ct, case.study, "2.25.5", 30, structure_set)


def test_let_records_per_roi_mean_max_l50(case):
    dose, let = _grids(case)
    structure_set = read_structure_set(case.rtstruct)
    rows, histograms = let_records(JOB, let, dose, structure_set,
                                   {"study_instance_uid": case.study.study_instance_uid,
                                    "dose_sop_instance_uid": "2.25.77"}, let_sop_instance_uid="2.25.78")
    target = {r.metric: r.value for r in rows if r.roi_name == "TargetVolume"}
    assert target == {"LETd_mean": 4.0, "LETd_max": 4.0, "L50": 4.0}
    masks = structure_masks(structure_set, grid_as_volume(dose))
    external = {r.metric: r.value for r in rows if r.roi_name == "External"}
    share = masks["TargetVolume"].sum() / masks["External"].sum()
    assert external["LETd_mean"] == pytest.approx(2.0 + 2.0 * share, abs=1e-3) and external["L50"] == 2.0
    assert all(r.unit == "keV/um" and r.source == "let" and r.job_id == JOB for r in rows)
    # Each ROI's dose-LET volume histogram: the target (66 Gy, 4 keV/um) lies wholly at the top right.
    by_roi = {h.roi_name: h for h in histograms}
    assert set(by_roi) == {r.roi_name for r in rows}
    target_h = by_roi["TargetVolume"].histogram
    assert by_roi["TargetVolume"].dose_sop_instance_uid == "2.25.77" and by_roi["TargetVolume"].job_id == JOB
    assert by_roi["TargetVolume"].let_sop_instance_uid == "2.25.78"
    i, j = target_h["dose_gy"].index(66.0), target_h["let_kev_um"].index(4.0)
    assert target_h["volume_pct"][i][j] == 100.0 and target_h["volume_pct"][-1][-1] == 100.0
    external_h = by_roi["External"].histogram
    j2 = external_h["let_kev_um"].index(2.0)
    assert external_h["volume_pct"][0][j2] == 100.0  # every External voxel has LETd >= 2
    assert external_h["volume_pct"][0][-1] == pytest.approx(100 * share, abs=1e-3)  # LETd 4: the target's share


def test_let_for_a_photon_plan_is_refused_naming_the_field(case, tmp_path, redis_url):
    orthanc = FakeOrthanc()
    stored = orthanc.store(photon_plan(case))
    url = f"sqlite:///{tmp_path / 'rt.sqlite'}"
    db.upgrade(url)
    router = make_router(orthanc, Settings(database_url=url), JobStore(url), Dispatcher(redis_url, job_timeout_s=60))
    response = router.handle(Request("POST", f"/rt/instances/{stored['ID']}/dose", body=b'{"let": true}'))
    assert response.status == 400
    body = response.body if isinstance(response.body, dict) else json.loads(response.body)
    assert "proton plans" in json.dumps(body) and "let" in json.dumps(body)


def test_the_stored_map_and_effective_dose_are_recognised_as_the_jobs_own(case, tmp_path):
    """Not another system's dose: an EFFECTIVE RTDOSE taken for a TPS dose would start a dose check of it."""
    from orthanc_rt.scheduling.origin import made_by_job

    dose, let = _grids(case)
    url = f"sqlite:///{tmp_path / 'rt.sqlite'}"
    db.upgrade(url)
    store = JobStore(url)
    store.create(Job(id=JOB, kind="dose", state="succeeded", stage="done", progress=1.0, message="", source="test",
                     requested_by="", study_instance_uid=case.study.study_instance_uid, orthanc_study_id="",
                     params={}, inputs={}, outputs={}, attempts=1))
    built, _, _ = let_objects(JOB, {"let": True, "rbe_model": "constant"}, dose, let, case.ct, case.study,
                              "2.25.7", 30, None)
    orthanc = FakeOrthanc()
    for item in built:
        stored = orthanc.store(dcmread(io.BytesIO(item.data)))
        assert made_by_job(orthanc, store, stored["ID"]) == JOB, item.name
