"""20 clients store the same RTPLAN at once, by REST and by C-STORE: one job, one RTDOSE."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support import cases as util
from tests.support.senders import c_store, rest_upload

pytestmark = pytest.mark.integration


def test_twenty_clients_store_the_same_plan(orthanc, rt_stack, tmp_path):
    case = util.small_phantom_case("twenty-clients")
    rest_upload(orthanc.base, [*case.ct, case.rtstruct])
    time.sleep(rt_stack.stable_age_s + 1)

    def send(i: int) -> None:
        if i % 2:
            rest_upload(orthanc.base, [case.plan])
        else:
            c_store(rt_stack.dicom_port, [case.plan], tmp_path / f"client-{i}")

    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(send, range(20)))  # re-raises a sender's failure

    study_uid = case.study.study_instance_uid
    job = orthanc.wait_job(lambda j: j["state"] in ("succeeded", "failed"), study=study_uid, kind="dose")
    assert job["state"] == "succeeded", job["message"]
    time.sleep(2)  # late change events would show up as more jobs now
    assert len(orthanc.jobs(study=study_uid, kind="dose")) == 1
    assert len(orthanc.study_instances(study_uid, "RTPLAN")) == 1
    assert len(orthanc.study_instances(study_uid, "RTDOSE")) == 1
    requested = orthanc.get("/rt/audit", params={"action": "dose.requested", "subject": job["id"]}).json()
    assert requested["total"] == 1


def test_twenty_concurrent_dose_requests_make_one_job(orthanc, rt_stack):
    case = util.small_phantom_case("twenty-requests")
    ids = rest_upload(orthanc.base, [*case.ct, case.rtstruct, case.plan])
    auto = orthanc.wait_job(lambda j: j["source"] == "auto", study=case.study.study_instance_uid, kind="dose")

    def request(_: int) -> dict:
        r = orthanc.post(f"/rt/instances/{ids[-1]}/dose", json={"primaries": 30_000})
        assert r.status_code == 200, r.text
        return r.json()

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(request, range(20)))
    assert sum(a["created"] for a in answers) == 1
    assert len({a["job"]["id"] for a in answers}) == 1
    job = orthanc.wait_final(answers[0]["job"]["id"])
    assert job["state"] == "succeeded", job["message"]
    assert orthanc.wait_final(auto["id"])["state"] == "succeeded"
    doses = orthanc.post("/tools/find", json={"Level": "Instance", "Query": {
        "StudyInstanceUID": case.study.study_instance_uid, "Modality": "RTDOSE"}}).json()
    assert len(doses) == 2  # the automatic dose and this one
