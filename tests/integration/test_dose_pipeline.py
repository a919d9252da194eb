"""The spine end to end: an ion RTPLAN stored in a real Orthanc comes back as an RTDOSE.

Real Orthanc with the plugin, real Redis and RQ worker, PostgreSQL, real
MCsquare (2e4 primaries on a small water phantom: each dose job costs a few
seconds). DICOM is sent the ways users send it: REST, C-STORE, STOW-RS.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

from orthanc_rt.dicom.dose import read_rtdose
from orthanc_rt.dicom.serialize import from_bytes
from tests.support import cases as util
from tests.support.senders import c_store, rest_upload, stow_rs

pytestmark = pytest.mark.integration


def _dose_instances(orthanc, study_uid: str) -> list[str]:
    return orthanc.study_instances(study_uid, "RTDOSE")


def test_health_reports_every_part(orthanc):
    health = orthanc.get("/rt/health").json()
    assert health["status"] == "ok"
    checks = health["checks"]
    assert checks["orthanc"]["version"].startswith("1.10")
    assert checks["redis"]["ok"] and checks["database"]["ok"]
    assert checks["workers"]["count"] >= 1
    assert "dose" in checks["redis"]["queues"]


def test_plan_after_ct_by_rest_gives_rtdose_in_the_same_study(orthanc, rt_stack):
    case = util.small_phantom_case("rest-after-ct")
    rest_upload(orthanc.base, [*case.ct, case.rtstruct])
    time.sleep(rt_stack.stable_age_s + 1)  # the CT is complete before the plan comes
    rest_upload(orthanc.base, [case.plan])
    study_uid = case.study.study_instance_uid
    job = orthanc.wait_job(lambda j: j["state"] in ("succeeded", "failed"), study=study_uid, kind="dose")
    assert job["state"] == "succeeded", job["message"]
    assert job["source"] == "auto"

    doses = _dose_instances(orthanc, study_uid)
    assert doses == [job["outputs"]["rtdose"]["orthanc_id"]]
    ds = from_bytes(orthanc.get(f"/instances/{doses[0]}/file").content)
    ct0 = case.ct[0]
    assert ds.Modality == "RTDOSE" and ds.DoseSummationType == "PLAN" and ds.DoseUnits == "GY"
    assert ds.StudyInstanceUID == ct0.StudyInstanceUID
    assert ds.FrameOfReferenceUID == ct0.FrameOfReferenceUID
    assert ds.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID == case.plan.SOPInstanceUID
    assert "MCsquare" in ds.SeriesDescription and "2e+04" in ds.SeriesDescription
    # Our own RTDOSE arrives like any other: it is analysed with the case's structure set.
    analysis = orthanc.wait_job(lambda j: j["state"] in ("succeeded", "failed"), study=study_uid, kind="analysis")
    assert analysis["state"] == "succeeded", analysis["message"]
    target = orthanc.get("/rt/measurements", params={"dose": str(ds.SOPInstanceUID), "roi": "TargetVolume",
                                                     "metric": "Dmean"}).json()["items"]
    assert len(target) == 1 and target[0]["value"] > 0 and target[0]["job_id"] == analysis["id"]
    grid = read_rtdose(ds)
    assert grid.dose_gy.max() == pytest.approx(job["outputs"]["dose_max_gy"], rel=1e-3)
    # The target (around the isocentre) receives dose; 20 mm beyond its distal edge, inside the
    # water, the laterally integrated depth dose has fallen to (almost) nothing.
    assert job["outputs"]["dose_at_isocenter_gy"] > 0.3 * job["outputs"]["dose_max_gy"]
    depth_dose = grid.dose_gy.sum(axis=(0, 2))
    y = grid.origin_mm[1] + grid.spacing_mm[1] * np.arange(grid.dose_gy.shape[1])
    beyond = (y > case.target_center_mm[1] + 7.5 + 20.0) & (y < 75.0 - 3.0)
    assert beyond.any() and float(depth_dose[beyond].max()) < 0.02 * depth_dose.max()

    history = orthanc.get(f"/rt/jobs/{job['id']}").json()["events"]
    assert [e["state"] for e in history][:2] == ["queued", "running"]
    assert history[-1]["state"] == "succeeded"


def test_plan_before_ct_waits_then_computes(orthanc, rt_stack, tmp_path):
    case = util.small_phantom_case("plan-first")
    study_uid = case.study.study_instance_uid
    c_store(rt_stack.dicom_port, [case.plan], tmp_path / "plan")
    job = orthanc.wait_job(lambda j: j["state"] == "waiting-for-input", study=study_uid, kind="dose", timeout_s=60)
    assert "CT" in job["message"]
    c_store(rt_stack.dicom_port, [*case.ct, case.rtstruct], tmp_path / "ct")
    done = orthanc.wait_final(job["id"])
    assert done["state"] == "succeeded", done["message"]
    states = [e["state"] for e in orthanc.get(f"/rt/jobs/{job['id']}").json()["events"]]
    assert "waiting-for-input" in states and states[-1] == "succeeded"
    assert len(_dose_instances(orthanc, study_uid)) == 1


def test_stow_rs_plan_triggers_and_resending_changes_nothing(orthanc, rt_stack, tmp_path):
    case = util.small_phantom_case("stow")
    study_uid = case.study.study_instance_uid
    stow_rs(orthanc.base, [*case.ct, case.rtstruct])
    time.sleep(rt_stack.stable_age_s + 1)
    stow_rs(orthanc.base, [case.plan])
    job = orthanc.wait_job(lambda j: j["state"] in ("succeeded", "failed"), study=study_uid, kind="dose")
    assert job["state"] == "succeeded", job["message"]
    # The same plan again, by REST and C-STORE: still one job, one RTDOSE.
    rest_upload(orthanc.base, [case.plan])
    c_store(rt_stack.dicom_port, [case.plan], tmp_path)
    time.sleep(3)
    assert [j["id"] for j in orthanc.jobs(study=study_uid, kind="dose")] == [job["id"]]
    assert len(_dose_instances(orthanc, study_uid)) == 1


def test_two_plans_in_a_row_get_their_own_doses(orthanc, rt_stack):
    """Guards the stale-dose hazard: each job must read its own MCsquare output."""
    shallow = util.small_phantom_case("two-plans-a", energy_mev=90.0)
    deep = util.small_phantom_case("two-plans-b", energy_mev=130.0)
    depths = []
    for case in (shallow, deep):
        rest_upload(orthanc.base, [*case.ct, case.rtstruct])
        time.sleep(rt_stack.stable_age_s + 1)
        rest_upload(orthanc.base, [case.plan])
        job = orthanc.wait_job(lambda j: j["state"] in ("succeeded", "failed"), study=case.study.study_instance_uid,
                               kind="dose")
        assert job["state"] == "succeeded", job["message"]
        grid = read_rtdose(from_bytes(orthanc.get(f"/instances/{job['outputs']['rtdose']['orthanc_id']}/file").content))
        profile = grid.dose_gy.sum(axis=(0, 2))  # along y, the beam direction of gantry 0
        depths.append(int(np.argmax(profile)))
    assert depths[1] > depths[0] + 5, f"Bragg peaks at y-index {depths}: the second dose is not its own"


def test_dose_on_demand_and_its_validation(orthanc, rt_stack):
    case = util.small_phantom_case("on-demand")
    ids = rest_upload(orthanc.base, [*case.ct, case.rtstruct, case.plan])
    plan_id, ct_id = ids[-1], ids[0]
    auto = orthanc.wait_job(lambda j: j["source"] == "auto", study=case.study.study_instance_uid, kind="dose")

    r = orthanc.post(f"/rt/instances/{plan_id}/dose", json={"primaries": 30000, "scoring_spacing_mm": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["created"] is True and body["job"]["id"] != auto["id"]
    again = orthanc.post(f"/rt/instances/{plan_id}/dose", json={"primaries": 30000, "scoring_spacing_mm": 3})
    assert again.json() == {**again.json(), "created": False} and again.json()["job"]["id"] == body["job"]["id"]
    done = orthanc.wait_final(body["job"]["id"])
    assert done["state"] == "succeeded", done["message"]
    grid = read_rtdose(from_bytes(orthanc.get(f"/instances/{done['outputs']['rtdose']['orthanc_id']}/file").content))
    assert grid.spacing_mm == pytest.approx((3.0, 3.0, 3.0))

    bad = orthanc.post(f"/rt/instances/{plan_id}/dose", json={"primaries": -5})
    assert bad.status_code == 400 and "primaries" in bad.json()["error"]
    bad = orthanc.post(f"/rt/instances/{plan_id}/dose", data=b"[1, 2")
    assert bad.status_code == 400 and "JSON" in bad.json()["error"]
    not_plan = orthanc.post(f"/rt/instances/{ct_id}/dose", json={})
    assert not_plan.status_code == 400 and "RT Ion Plan" in not_plan.json()["error"]
    missing = orthanc.post("/rt/instances/0000aaaa-bbbbbbbb-cccccccc-dddddddd-eeeeeeee/dose", json={})
    assert missing.status_code == 404


def test_job_routes_answer_errors_clearly(orthanc):
    assert orthanc.get("/rt/jobs/dose-doesnotexist").status_code == 404
    assert orthanc.get("/rt/jobs", params={"state": "sleeping"}).status_code == 400
    assert orthanc.get("/rt/jobs", params={"limit": "lots"}).status_code == 400
    assert orthanc.get("/rt/nowhere").status_code == 404
    assert orthanc.post("/rt/jobs").status_code == 405
    assert orthanc.get("/rt/health").status_code == 200  # and Orthanc is still up
