"""The dose job with `let` and `rbe_model`, end to end but for Orthanc: real MCsquare on the small water phantom,
the job's own code from fetching the plan to storing its results, an in-memory Orthanc (tests/support)
holding the CT, structure set and plan, and a SQLite job and measurement database.

What it checks: the job stores an RTDOSE, a Parametric Map of LETd and an EFFECTIVE RTDOSE in the study, with
the UIDs derived from the job, the map's values equal to the physics (restricted to the body and above 1 % of
the dose maximum) and per-ROI LETd records in the database. About 10 s on 2 cores.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
from pydicom import dcmread

pytest.importorskip("opentps.core")
pytest.importorskip("highdicom")

from orthanc_rt.analysis.body import grid_as_volume  # noqa: E402
from orthanc_rt.analysis.rbe import rbe  # noqa: E402
from orthanc_rt.analysis.roi_masks import structure_masks  # noqa: E402
from orthanc_rt.dicom.dose import read_rtdose  # noqa: E402
from orthanc_rt.dicom.ion_plan import read_ion_plan  # noqa: E402
from orthanc_rt.dicom.parametric_map import read_let_map  # noqa: E402
from orthanc_rt.dicom.rtstruct import read_structure_set  # noqa: E402
from orthanc_rt.dicom.uids import derive_uid  # noqa: E402
from orthanc_rt.pacs.resources import instance_ref  # noqa: E402
from orthanc_rt.records import db  # noqa: E402
from orthanc_rt.records.jobs import Job, JobStore, job_id  # noqa: E402
from orthanc_rt.records.measurements import MeasurementQuery, MeasurementStore  # noqa: E402
from orthanc_rt.scheduling.params import DoseParams  # noqa: E402
from orthanc_rt.settings import Settings  # noqa: E402
from tests.support.cases import small_phantom_case  # noqa: E402
from tests.support.fake_orthanc import FakeOrthanc  # noqa: E402
from worker.jobs import dose as dose_job  # noqa: E402


@pytest.mark.physics
def test_a_dose_request_with_let_stores_rtdose_parametric_map_and_effective_rtdose(tmp_path):
    case = small_phantom_case("dose-job-let")
    orthanc = FakeOrthanc([*case.ct, case.rtstruct])
    stored = orthanc.store(case.plan)
    plan = instance_ref(orthanc, stored["ID"])
    url = f"sqlite:///{tmp_path / 'rt.sqlite'}"
    db.upgrade(url)
    store = JobStore(url)
    params = DoseParams(primaries=100_000, scoring_spacing_mm=None, wait_for_ct_seconds=0, let=True,
                        rbe_model="mcnamara", alpha_beta_gy=2.0, alpha_beta_by_roi={"TargetVolume": 10.0})
    jid = job_id("dose", plan.sop_instance_uid, params=params.identity())
    job, _ = store.create(Job(id=jid, kind="dose", state="queued", stage="queued", progress=0.0, message="",
                              source="test", requested_by="", study_instance_uid=plan.study_instance_uid,
                              orthanc_study_id=plan.orthanc_study_id, params=params.as_dict(),
                              inputs={"plan": {"orthanc_id": plan.orthanc_id,
                                               "sop_instance_uid": plan.sop_instance_uid}},
                              outputs={}, attempts=0))
    assert store.start(jid, actor="test")
    outputs = dose_job._compute_and_store(store.get(jid), orthanc, Settings(database_url=url), store,
                                          tmp_path / "work")

    physical = read_rtdose(dcmread(io.BytesIO(orthanc.get_bytes(f"/instances/{outputs['rtdose']['orthanc_id']}/file"))))
    map_ds = dcmread(io.BytesIO(orthanc.get_bytes(f"/instances/{outputs['letmap']['orthanc_id']}/file")))
    effective_ds = dcmread(io.BytesIO(orthanc.get_bytes(
        f"/instances/{outputs['rtdose-effective']['orthanc_id']}/file")))
    assert map_ds.SOPInstanceUID == derive_uid("orthanc-rt", jid, "letmap")
    assert effective_ds.SOPInstanceUID == derive_uid("orthanc-rt", jid, "rtdose-effective")
    assert map_ds.StudyInstanceUID == effective_ds.StudyInstanceUID == case.study.study_instance_uid

    let = read_let_map(map_ds)
    assert let.let_kev_um.shape == physical.dose_gy.shape
    np.testing.assert_allclose(let.origin_mm, physical.origin_mm, atol=1e-3)
    threshold = 0.01 * float(physical.dose_gy.max())
    meaningful = physical.dose_gy >= threshold * 1.001  # the stored dose is quantized: stay clear of the edge
    assert np.all(let.let_kev_um[meaningful] > 0) and not np.any(let.let_kev_um[physical.dose_gy < threshold * 0.999])
    assert 0.5 < float(np.median(let.let_kev_um[meaningful])) < 10.0

    effective = read_rtdose(effective_ds)
    assert effective_ds.DoseType == "EFFECTIVE" and "McNamara 2015, a/b 2 Gy (ROI a/b)" in effective_ds.DoseComment
    # Voxel by voxel the model's RBE at the stored dose per fraction and LETd, a/b 10 Gy in the target, 2 elsewhere
    # (the stored dose and map are quantized to 1e-5 of their maxima).
    target = structure_masks(read_structure_set(case.rtstruct), grid_as_volume(physical))["TargetVolume"]
    fractions = int(read_ion_plan(case.plan).fractions_planned)
    expected = physical.dose_gy * rbe("mcnamara", physical.dose_gy / fractions, let.let_kev_um,
                                      np.where(target, 10.0, 2.0))
    np.testing.assert_allclose(effective.dose_gy[meaningful], expected[meaningful], rtol=1e-3)
    ratio = effective.dose_gy[meaningful & target] / physical.dose_gy[meaningful & target]
    assert 1.0 < float(np.median(ratio)) < 1.3  # target: high dose per fraction, a/b 10 Gy

    rows, total = MeasurementStore(url).query(MeasurementQuery(job=jid, limit=100))
    metrics = {(r.roi_name, r.metric): r.value for r in rows}
    assert {("TargetVolume", "LETd_mean"), ("TargetVolume", "L50"), ("External", "LETd_max")} <= set(metrics)
    assert metrics[("External", "LETd_max")] >= metrics[("TargetVolume", "LETd_max")]
    assert outputs["let_records"] == total

    # The target's dose-LET volume histogram, against the stored dose and map counted voxel by voxel.
    [target_h] = [h for h in MeasurementStore(url).dose_let_histograms(outputs["rtdose"]["sop_instance_uid"])
                  if h.roi_name == "TargetVolume"]
    assert target_h.job_id == jid and target_h.let_sop_instance_uid == map_ds.SOPInstanceUID
    assert outputs["dose_let_histograms"] >= 2 and target_h.voxels == int(target.sum())
    h = target_h.histogram
    volume = np.asarray(h["volume_pct"])
    assert volume[0, 0] == 100.0 and np.all(np.diff(volume, axis=0) <= 0) and np.all(np.diff(volume, axis=1) <= 0)
    d, l_ = physical.dose_gy[target], let.let_kev_um[target]
    for i in range(0, len(h["dose_gy"]), 7):
        for j in range(0, len(h["let_kev_um"]), 5):
            at_least = (d >= h["dose_gy"][i] - 1e-4) & (l_ >= h["let_kev_um"][j] - 1e-4)
            counted = 100.0 * np.count_nonzero(at_least) / d.size
            assert volume[i, j] == pytest.approx(counted, abs=100.0 / d.size + 1e-3), (i, j)
