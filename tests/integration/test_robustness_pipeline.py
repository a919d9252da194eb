"""Robustness evaluation end to end: POST /rt/instances/{plan}/robustness on a stored plan, in a real stack.

Real Orthanc with the plugin, Redis, an RQ worker, the database and MCsquare (2e4 primaries per scenario on the
small water phantom). The evaluation stores the voxel-wise minimum and maximum dose over the scenarios as
RTDOSEs in the plan's study, records every goal in every scenario and its worst case (source robustness), and
serves the DVH bands as JSON and PNG. Bad requests are 400s naming the field; a goal on an ROI the structure set
lacks fails the job, naming the ROI, before any Monte Carlo.
"""
from __future__ import annotations

import numpy as np
import pytest

from orthanc_rt.dicom.dose import read_rtdose
from orthanc_rt.dicom.serialize import from_bytes
from tests.support import cases as util
from tests.support.browser import ARTIFACTS
from tests.support.senders import rest_upload
from tests.support.stack import Client

pytestmark = pytest.mark.integration


def _stored_plan(orthanc, name: str, *, photon: bool = False) -> str:
    case = util.small_phantom_case(name)
    plan = util.photon_plan(case) if photon else case.plan
    rest_upload(orthanc.base, [plan] if photon else [*case.ct, case.rtstruct, case.plan])
    return orthanc.post("/tools/find", json={"Level": "Instance", "Query": {
        "SOPInstanceUID": str(plan.SOPInstanceUID)}}).json()[0]


@pytest.mark.parametrize("body, field", [
    ({"setup_error_mm": 11}, "setup_error_mm"),
    ({"range_error_pct": -1}, "range_error_pct"),
    ({"scenarios": {"random": 0}}, "scenarios.random"),
    ({"scenarios": {"random": 101, "seed": 1}}, "scenarios.random"),
    ({"scenarios": "some"}, "scenarios"),
    ({"primaries": 10}, "primaries"),
    ({"goals": ["CTV D95 95"]}, "goals[0]"),
    ({"goals": [{"roi": "CTV", "metric": "D120", "op": ">=", "value": 95, "unit": "%"}]}, "goals[0]"),
    ({"protocol": "nonesuch"}, "protocol"),
    ({"setup": 3}, "setup"),
])
def test_bad_requests_are_400s_naming_the_field(orthanc, body, field):
    plan_id = _stored_plan(orthanc, "robust-bad")
    answer = orthanc.post(f"/rt/instances/{plan_id}/robustness", json=body)
    assert answer.status_code == 400, answer.text
    assert field in answer.text, answer.text


def test_a_photon_plan_is_a_400(orthanc):
    plan_id = _stored_plan(orthanc, "robust-photon", photon=True)
    answer = orthanc.post(f"/rt/instances/{plan_id}/robustness", json={})
    assert answer.status_code == 400 and "RT Ion Plan" in answer.text, answer.text


@pytest.fixture(scope="module")
def evaluation(rt_stack) -> dict:
    """One evaluation of the stored phantom plan with the stack's protocol: (plan id, scenarios, finished job)."""
    orthanc = Client(rt_stack.orthanc_url)
    plan_id = _stored_plan(orthanc, "robust-pipeline")
    answer = orthanc.rt.request_robustness(plan_id, setup_error_mm=3, range_error_pct=3,
                                           scenarios={"random": 3, "seed": 7}, primaries=20000, protocol="phantom")
    return {"plan_id": plan_id, "answer": answer, "job": orthanc.wait_final(answer["job"]["id"], timeout_s=600)}


def test_evaluation_stores_min_max_rtdose_goal_records_and_dvh_bands(orthanc, evaluation):
    plan_id, answer, job = evaluation["plan_id"], evaluation["answer"], evaluation["job"]
    scenarios = answer["scenarios"]
    assert len(scenarios) == 4 and scenarios[0] == "nominal" and answer["goals_from"] == "protocol phantom"
    assert job["state"] == "succeeded", job["message"]
    outputs = job["outputs"]

    low_ds, high_ds = (from_bytes(orthanc.get(f"/instances/{outputs[name]['orthanc_id']}/file").content)
                       for name in ("rtdose-min", "rtdose-max"))
    assert "minimum" in low_ds.SeriesDescription and "minimum" in low_ds.DoseComment
    assert "maximum" in high_ds.SeriesDescription and "maximum" in high_ds.DoseComment
    low, high = read_rtdose(low_ds), read_rtdose(high_ds)
    assert 0 < float(low.dose_gy.max()) <= float(high.dose_gy.max())
    assert [s["name"] for s in outputs["scenarios"]] == scenarios

    rows = orthanc.get("/rt/measurements", params={"job": job["id"], "source": "robustness",
                                                   "limit": 100}).json()["items"]
    assert len(rows) == 2 * (len(scenarios) + 1)  # two goals, every scenario and the worst case
    worst = {r["roi_name"]: r for r in rows if r["label"] == "worst case"}
    coverage = [r["value"] for r in rows if r["roi_name"] == "TargetVolume" and r["label"] != "worst case"]
    assert worst["TargetVolume"]["value"] == pytest.approx(min(coverage))
    assert worst["TargetVolume"]["details"]["goal"] == "TargetVolume D95 >= 90 %"
    assert {r["label"] for r in rows} == {*scenarios, "worst case"}
    summary = {g["goal"]: g for g in outputs["goals"]}
    assert summary["TargetVolume D95 >= 90 %"]["reference"] == "nominal"  # the phantom plan has no prescription

    bands = orthanc.rt.dvh_bands(plan_id, job["id"])["rois"]
    target = {k: np.array(v) for k, v in bands["TargetVolume"].items()}
    assert np.all(target["min"] <= target["nominal"] + 1e-9) and np.all(target["nominal"] <= target["max"] + 1e-9)
    png = orthanc.get(f"/rt/instances/{plan_id}/robustness/{job['id']}/dvh-bands.png")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    assert orthanc.get(f"/rt/instances/{plan_id}/robustness/nonesuch/dvh-bands").status_code == 404


@pytest.mark.browser
def test_explorer_shows_the_goals_worst_case_and_links_on_the_plan_page(orthanc, evaluation, browser):
    plan_id, job = evaluation["plan_id"], evaluation["job"]
    assert job["state"] == "succeeded", job["message"]
    outputs = job["outputs"]
    page = browser.new_page(viewport={"width": 1200, "height": 1600})
    page.goto(f"{orthanc.base}/app/explorer.html#instance?uuid={plan_id}")
    row = page.locator(f"#orthanc-rt-robustness [data-rt-robustness='{job['id']}']")
    row.wait_for(timeout=30_000)
    verdicts = row.locator("[data-rt-goal-passed]")
    assert verdicts.count() == 2
    assert [verdicts.nth(k).inner_text() for k in range(2)] == [
        "PASS" if g["passed"] else "FAIL" for g in outputs["goals"]]
    assert row.locator(f"a[href='#instance?uuid={outputs['rtdose-min']['orthanc_id']}']").count() == 1
    assert row.locator("a", has_text="DVH bands").get_attribute("href").endswith("/dvh-bands.png")
    page.screenshot(path=str(ARTIFACTS / "explorer-robustness.png"), full_page=True)
    page.close()



def test_a_goal_on_an_unknown_roi_is_a_400_or_fails_the_job_naming_it(orthanc):
    plan_id = _stored_plan(orthanc, "robust-roi")
    answer = orthanc.post(f"/rt/instances/{plan_id}/robustness", json={
        "scenarios": {"random": 1}, "primaries": 20000, "goals": ["Rectum V70Gy <= 15 %"]})
    assert answer.status_code == 400 and "'Rectum'" in answer.text and "TargetVolume" in answer.text, answer.text

    # A plan whose structure set has not arrived: the job waits for its CT and then names the missing ROI.
    case = util.small_phantom_case("robust-roi-later")
    rest_upload(orthanc.base, [*case.ct, case.plan])
    later = orthanc.post("/tools/find", json={"Level": "Instance", "Query": {
        "SOPInstanceUID": str(case.plan.SOPInstanceUID)}}).json()[0]
    answer = orthanc.post(f"/rt/instances/{later}/robustness", json={
        "scenarios": {"random": 1}, "primaries": 20000, "goals": ["Rectum V70Gy <= 15 %"]})
    assert answer.status_code == 200, answer.text
    job = orthanc.wait_final(answer.json()["job"]["id"])
    assert job["state"] == "failed" and "'Rectum'" in job["message"], job["message"]
