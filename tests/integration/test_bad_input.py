"""Bad input ends as a 4xx or a failed job with a readable reason; Orthanc and the worker carry on."""
from __future__ import annotations

import time

import pytest

from orthanc_rt.dicom.serialize import to_bytes
from tests.support import cases as util
from tests.support.senders import rest_upload
from tests.support.stack import mcsquare_running

pytestmark = pytest.mark.integration


def _final_auto_job(orthanc, study_uid: str) -> dict:
    return orthanc.wait_job(lambda j: j["state"] in ("succeeded", "failed", "cancelled"), study=study_uid,
                           kind="dose")


def _still_serving(orthanc) -> None:
    assert orthanc.get("/system").status_code == 200
    assert orthanc.get("/rt/health").json()["checks"]["workers"]["count"] >= 1


def test_photon_plan_fails_readably(orthanc):
    case = util.small_phantom_case("photon")
    rest_upload(orthanc.base, [*case.ct, case.rtstruct, util.photon_plan(case)])
    job = _final_auto_job(orthanc, case.study.study_instance_uid)
    assert job["state"] == "failed"
    assert "photon" in job["message"].lower()
    _still_serving(orthanc)


def test_energy_missing_from_the_beam_model_fails_readably(orthanc):
    case = util.small_phantom_case("too-much-energy", energy_mev=300.0)
    rest_upload(orthanc.base, [*case.ct, case.rtstruct, case.plan])
    job = _final_auto_job(orthanc, case.study.study_instance_uid)
    assert job["state"] == "failed"
    assert "300" in job["message"] and "beam model" in job["message"]


def test_plan_without_spots_fails_readably(orthanc):
    case = util.small_phantom_case("no-spots")
    rest_upload(orthanc.base, [*case.ct, case.rtstruct, util.plan_without_spots(case)])
    job = _final_auto_job(orthanc, case.study.study_instance_uid)
    assert job["state"] == "failed"
    assert "spot" in job["message"].lower() or "weight" in job["message"].lower()


def test_corrupt_file_is_refused_and_nothing_else_changes(orthanc):
    before = orthanc.get("/statistics").json()["CountInstances"]
    good = to_bytes(util.small_phantom_case("corrupt").plan)
    for payload in (good[: len(good) // 3], b"DICM" * 100, b""):
        r = orthanc.post("/instances", data=payload)
        assert 400 <= r.status_code < 500
    assert orthanc.get("/statistics").json()["CountInstances"] == before
    _still_serving(orthanc)


def test_plan_whose_ct_never_arrives_fails_after_its_wait(orthanc):
    case = util.small_phantom_case("no-ct")
    (plan_id,) = rest_upload(orthanc.base, [case.plan])
    r = orthanc.post(f"/rt/instances/{plan_id}/dose", json={"primaries": 25000, "wait_for_ct_seconds": 2})
    job_id = r.json()["job"]["id"]
    done = orthanc.wait_final(job_id, timeout_s=60)
    assert done["state"] == "failed"
    assert "gave up waiting" in done["message"] and "CT" in done["message"]


def test_plan_that_names_no_ct_fails_at_once(orthanc):
    """No FrameOfReferenceUID and no structure set: no CT can ever match, so no hour-long wait (the stack
    waits 600 s for a CT; this must end well within that)."""
    case = util.small_phantom_case("no-ct-references")
    rest_upload(orthanc.base, [*case.ct, case.rtstruct, util.plan_without_ct_references(case)])
    job = orthanc.wait_job(lambda j: j["state"] in ("succeeded", "failed", "cancelled"), kind="dose",
                           study=case.study.study_instance_uid, timeout_s=120)
    assert job["state"] == "failed", job
    assert "neither a structure set" in job["message"] and "FrameOfReferenceUID" in job["message"], job["message"]
    assert "gave up waiting" not in job["message"]


def test_plan_whose_beams_miss_the_ct_fails_instead_of_storing_an_empty_dose(orthanc):
    case = util.small_phantom_case("isocentre-1km")
    # Along the beam, downstream: MCsquare alone would score a stray 0.02 Gy voxel and "succeed".
    rest_upload(orthanc.base, [*case.ct, case.rtstruct, util.plan_with_isocentre_shifted(case, (0.0, 1e6, 0.0))])
    job = _final_auto_job(orthanc, case.study.study_instance_uid)
    assert job["state"] == "failed", job
    assert "the plan's beams miss the CT" in job["message"], job["message"]
    assert "999897 mm outside the CT" in job["message"] and "IsocenterPosition" in job["message"], job["message"]
    assert orthanc.study_instances(case.study.study_instance_uid, "RTDOSE") == []
    _still_serving(orthanc)


def test_isocentre_outside_the_ct_is_a_warning_in_the_job_and_the_rtdose(orthanc):
    """Moved 125 mm downstream (the beam points along +y), the isocentre is 22 mm behind the CT; the beam still
    crosses the water and leaves its dose: the job succeeds and says what to check."""
    case = util.small_phantom_case("isocentre-behind")
    rest_upload(orthanc.base, [*case.ct, case.rtstruct, util.plan_with_isocentre_shifted(case, (0.0, 125.0, 0.0))])
    job = _final_auto_job(orthanc, case.study.study_instance_uid)
    assert job["state"] == "succeeded", job
    assert "is 22 mm outside the CT" in job["message"], job["message"]
    assert job["outputs"]["warnings"] == [job["message"]] and job["outputs"]["dose_max_gy"] > 0
    tags = orthanc.get(f"/instances/{job['outputs']['rtdose']['orthanc_id']}/simplified-tags").json()
    assert tags["SeriesDescription"].endswith("WARNING") and "outside the CT" in tags["DoseComment"], tags


def test_cancelling_a_running_job_stops_mcsquare(orthanc, rt_stack):
    case = util.small_phantom_case("cancel")
    ids = rest_upload(orthanc.base, [*case.ct, case.rtstruct, case.plan])
    auto = _final_auto_job(orthanc, case.study.study_instance_uid)
    assert auto["state"] == "succeeded"
    r = orthanc.post(f"/rt/instances/{ids[-1]}/dose", json={"primaries": 20_000_000})
    job_id = r.json()["job"]["id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = orthanc.get(f"/rt/jobs/{job_id}").json()
        if job["stage"].startswith("Monte Carlo") and mcsquare_running(rt_stack.data_dir):
            break
        time.sleep(0.3)
    else:
        pytest.fail(f"MCsquare never started for {job_id}: {job}")
    answer = orthanc.delete(f"/rt/jobs/{job_id}")
    assert answer.status_code == 200 and answer.json()["cancelled"] is True
    deadline = time.monotonic() + 20
    while mcsquare_running(rt_stack.data_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not mcsquare_running(rt_stack.data_dir), "MCsquare still running after cancellation"
    assert orthanc.get(f"/rt/jobs/{job_id}").json()["state"] == "cancelled"
    assert len(orthanc.study_instances(case.study.study_instance_uid, "RTDOSE")) == 1  # only the auto dose
    _still_serving(orthanc)


