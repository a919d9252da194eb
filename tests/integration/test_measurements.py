"""Measurement records end to end: DICOM sent the ways users send it, rows read back through /rt/.

Real Orthanc + plugin, RQ worker, Redis and PostgreSQL (the rt_stack fixture).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from orthanc_rt.analysis.dose_analysis import analyse
from orthanc_rt.records.measurements import COLUMNS
from orthanc_rt.scheduling.params import AnalysisParams
from tests.support import cases as util
from tests.support.senders import c_store, rest_upload, stow_rs

pytestmark = pytest.mark.integration


def _analysis_jobs(orthanc, study_uid: str) -> list[dict]:
    return orthanc.jobs(kind="analysis", study=study_uid)


def _rows(orthanc, **filters) -> list[dict]:
    r = orthanc.get("/rt/measurements", params={"limit": 500, **filters})
    assert r.status_code == 200, r.text
    return r.json()["items"]


def _instance_id(orthanc, sop_uid: str) -> str:
    found = orthanc.post("/tools/find", json={"Level": "Instance", "Query": {"SOPInstanceUID": sop_uid}}).json()
    assert len(found) == 1
    return found[0]


def test_dose_first_waits_then_structures_by_stow_trigger_the_analysis(orthanc):
    case = util.dvh_case("it-dose-first")
    study, dose_uid = case.study.study_instance_uid, str(case.rtdose.SOPInstanceUID)
    rest_upload(orthanc.base, [*case.ct, case.rtdose])
    waiting = orthanc.wait_job(lambda j: j["state"] == "waiting-for-input", kind="analysis", study=study,
                               timeout_s=60)
    assert "RTSTRUCT" in waiting["message"] and case.study.frame_of_reference_uid in waiting["message"]

    stow_rs(orthanc.base, [case.rtstruct])
    pair = orthanc.wait_job(lambda j: j["inputs"].get("structure_set"), kind="analysis", study=study, timeout_s=60)
    pair = orthanc.wait_final(pair["id"], timeout_s=120)
    assert pair["state"] == "succeeded", pair
    assert pair["outputs"]["rois_analysed"] == 5 and pair["outputs"]["skipped"] == []
    closed = orthanc.get(f"/rt/jobs/{waiting['id']}").json()
    assert closed["state"] == "succeeded" and closed["outputs"]["analysed_by"] == [pair["id"]]

    # What the pipeline stored is what the analysis computes on the same objects.
    expected = analyse(case.rtdose, case.rtstruct, case.ct, AnalysisParams(), job_id=pair["id"])
    want = {(m.roi_name, m.metric): m.value for m in expected.measurements}
    rows = _rows(orthanc, dose=dose_uid)
    assert {(r["roi_name"], r["metric"]): r["value"] for r in rows} == pytest.approx(want)
    ptv_mean = _rows(orthanc, dose=dose_uid, roi="PTV", metric="Dmean")
    assert len(ptv_mean) == 1
    row = ptv_mean[0]
    assert row["source"] == "dvh" and row["unit"] == "Gy" and row["job_id"] == pair["id"]
    assert row["structure_set_sop_instance_uid"] == str(case.rtstruct.SOPInstanceUID)
    assert row["ct_series_instance_uid"] == str(case.ct[0].SeriesInstanceUID)
    assert row["study_instance_uid"] == study and row["roi_number"] == 2
    assert _rows(orthanc, dose=dose_uid, source="image", metric="HUmean")  # CT statistics too

    # Re-sending the dose runs the same job again: rows replaced, not duplicated.
    dose_id = _instance_id(orthanc, dose_uid)
    assert orthanc.delete(f"/instances/{dose_id}").status_code == 200
    rest_upload(orthanc.base, [case.rtdose])
    orthanc.wait_job(lambda j: j["id"] == pair["id"] and j["attempts"] == 2 and j["state"] == "succeeded",
                     kind="analysis", study=study, timeout_s=120)
    again = _rows(orthanc, dose=dose_uid)
    assert len(again) == len(rows)
    assert len(_analysis_jobs(orthanc, study)) == 2  # the pair job and the closed wait

    # Curves, plot, per-ROI summary, exports.
    dvh = orthanc.get(f"/rt/doses/{dose_id}/dvh").json()
    assert sorted(c["roi_name"] for c in dvh["curves"]) == sorted(case.roi_names)
    assert all(c["volume_pct"][0] == 100.0 and len(c["dose_gy"]) == len(c["volume_pct"]) for c in dvh["curves"])
    png = orthanc.get(f"/rt/doses/{dose_uid}/dvh.png")
    assert png.status_code == 200 and png.headers["Content-Type"] == "image/png"
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n" and len(png.content) > 10_000
    study_id = orthanc.post("/tools/find", json={"Level": "Study", "Query": {"StudyInstanceUID": study}}).json()[0]
    summary = orthanc.get(f"/rt/studies/{study_id}/measurements/summary").json()
    assert {line["roi_name"] for line in summary["rois"]} == set(case.roi_names)
    ptv = next(line for line in summary["rois"] if line["roi_name"] == "PTV")
    assert ptv["metrics"]["Dmean"] == pytest.approx(want[("PTV", "Dmean")]) and ptv["units"]["D95"] == "Gy"
    exported = orthanc.get("/rt/measurements", params={"dose": dose_uid, "format": "csv", "limit": 10000})
    assert exported.headers["Content-Type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(exported.text)))
    assert tuple(table[0]) == COLUMNS and len(table) == len(rows) + 1
    page = orthanc.get("/rt/measurements", params={"dose": dose_uid, "limit": 5, "offset": 5, "sort": "-value"})
    body = page.json()
    assert body["total"] == len(rows) and len(body["items"]) == 5
    values = [r["value"] for r in body["items"]]
    assert values == sorted(values, reverse=True)


def test_structures_first_then_dose_by_c_store(orthanc, rt_stack, tmp_path: Path):
    case = util.dvh_case("it-structures-first")
    rest_upload(orthanc.base, [*case.ct, util.with_bad_rois(case.rtstruct)])
    c_store(rt_stack.dicom_port, [case.rtdose], tmp_path)
    job = orthanc.wait_job(lambda j: j["state"] in ("succeeded", "failed"), kind="analysis",
                           study=case.study.study_instance_uid, timeout_s=120)
    assert job["state"] == "succeeded", job
    reasons = {s["roi_name"]: s["reason"] for s in job["outputs"]["skipped"]}
    assert set(reasons) == {"Empty", "Degenerate"} and "2 points" in reasons["Degenerate"]
    assert job["outputs"]["rois_analysed"] == 5


def test_other_frame_of_reference_is_refused_with_a_reason(orthanc):
    case = util.dvh_case("it-other-frame")
    other = util.on_other_frame(case.rtdose)
    rest_upload(orthanc.base, [case.rtstruct, other])
    dose_id = _instance_id(orthanc, str(other.SOPInstanceUID))
    rs_id = _instance_id(orthanc, str(case.rtstruct.SOPInstanceUID))
    r = orthanc.post(f"/rt/instances/{dose_id}/analysis", json={"structure_set": rs_id})
    assert r.status_code == 400 and r.json()["field"] == "structure_set"
    assert "FrameOfReferenceUID" in r.json()["error"]
    # The automatic trigger never paired them: the dose waits for a structure set of its own frame.
    job = orthanc.wait_job(lambda j: True, kind="analysis", study=case.study.study_instance_uid, timeout_s=30)
    assert job["state"] == "waiting-for-input" and "structure_set" not in job["inputs"]


def test_manual_measurements_crud_and_validation(orthanc):
    study = util.dvh_case("it-manual").study.study_instance_uid
    body = {"type": "distance", "value": 12.5, "study_instance_uid": study, "label": "node",
            "series_instance_uid": "1.2.3", "sop_instance_uid": "1.2.3.4", "frame_number": 1}
    # Authentication is off in this stack: the Basic user name is taken as given (docs/rest-api.md, roles).
    r = orthanc.post("/rt/measurements", json=body, auth=("physicist", "unchecked"))
    assert r.status_code == 201, r.text
    created = r.json()
    assert (created["source"], created["unit"], created["created_by"]) == ("manual", "mm", "physicist")
    mid = created["id"]
    r = orthanc.put(f"/rt/measurements/{mid}", json={"value": 13.0})
    assert r.status_code == 200 and r.json()["value"] == 13.0 and r.json()["label"] == "node"
    assert orthanc.get(f"/rt/measurements/{mid}").json()["value"] == 13.0
    for bad, field in (({**body, "type": "weight"}, "type"), ({**body, "value": "12"}, "value"),
                       ({**body, "type": "angle", "value": 400}, "value"), ({**body, "unit": "cm"}, "unit"),
                       ({**body, "study_instance_uid": "not-a-uid"}, "study_instance_uid"),
                       ({**body, "frame_number": 0}, "frame_number"), ({**body, "colour": "red"}, "colour")):
        r = orthanc.post("/rt/measurements", json=bad)
        assert r.status_code == 400 and r.json()["field"] == field, (bad, r.text)
    for kind, value, unit in (("area", 100.0, "mm2"), ("angle", 45.0, "deg"), ("volume", 1000.0, "mm3"),
                              ("hounsfield", -50.0, "HU")):
        r = orthanc.post("/rt/measurements", json={"type": kind, "value": value, "study_instance_uid": study})
        assert r.status_code == 201 and r.json()["unit"] == unit
    assert len(_rows(orthanc, study=study, source="manual")) == 5
    assert orthanc.delete(f"/rt/measurements/{mid}").status_code == 200
    assert orthanc.get(f"/rt/measurements/{mid}").status_code == 404
    assert orthanc.get("/rt/measurements", params={"source": "robot"}).json()["field"] == "source"


def test_computed_rows_cannot_be_edited(orthanc):
    rows = _rows(orthanc, source="dvh", limit=1)
    if not rows:
        pytest.skip("needs an analysed dose (run with the other tests of this module)")
    assert orthanc.put(f"/rt/measurements/{rows[0]['id']}", json={"value": 1}).status_code == 409
    assert orthanc.delete(f"/rt/measurements/{rows[0]['id']}").status_code == 409


def test_ohif_measurement_report_is_imported(orthanc):
    case = util.dvh_case("it-sr")
    report = util.measurement_report(case, name="it-sr")
    stow_rs(orthanc.base, [report])
    job = orthanc.wait_job(lambda j: j["state"] in ("succeeded", "failed"), kind="sr",
                           study=case.study.study_instance_uid, timeout_s=60)
    assert job["state"] == "succeeded", job
    rows = _rows(orthanc, source="sr", study=case.study.study_instance_uid)
    assert sorted((r["type"], r["value"], r["unit"]) for r in rows) == [("area", 310.0, "mm2"),
                                                                         ("distance", 42.5, "mm")]
    assert {r["sr_instance_uid"] for r in rows} == {str(report.SOPInstanceUID)}
    assert {r["sop_instance_uid"] for r in rows} == {str(case.ct[20].SOPInstanceUID), str(case.ct[21].SOPInstanceUID)}

