"""LET and RBE-weighted dose end to end: a dose request with `let` on a stored plan, in a real stack.

Real Orthanc with the plugin, Redis, an RQ worker, the database and MCsquare (2e4 primaries on the small water
phantom). The request stores, in the plan's study, the physical RTDOSE, the LETd as a Parametric Map and an
EFFECTIVE RTDOSE; the LETd per ROI is in /rt/measurements (source let), and the EFFECTIVE dose is analysed
like every RTDOSE (its DVH metrics next to the physical ones). A photon plan with `let` is refused (400).
"""
from __future__ import annotations

import numpy as np
import pytest

from orthanc_rt.dicom.dose import read_rtdose
from orthanc_rt.dicom.parametric_map import PARAMETRIC_MAP, read_let_map
from orthanc_rt.dicom.serialize import from_bytes
from tests.support import cases as util
from tests.support.senders import rest_upload

pytestmark = pytest.mark.integration


def test_dose_request_with_let_stores_rtdose_parametric_map_and_effective_rtdose(orthanc):
    case = util.small_phantom_case("let-pipeline")
    study_uid = case.study.study_instance_uid
    rest_upload(orthanc.base, [*case.ct, case.rtstruct, case.plan])
    plan_id = orthanc.post("/tools/find", json={"Level": "Instance", "Query": {
        "SOPInstanceUID": str(case.plan.SOPInstanceUID)}}).json()[0]
    answer = orthanc.post(f"/rt/instances/{plan_id}/dose",
                          json={"primaries": 20000, "let": True, "rbe_model": "wedenberg", "alpha_beta_gy": 3})
    assert answer.status_code == 200, answer.text
    job = orthanc.wait_final(answer.json()["job"]["id"])
    assert job["state"] == "succeeded", job["message"]
    outputs = job["outputs"]

    letmap = from_bytes(orthanc.get(f"/instances/{outputs['letmap']['orthanc_id']}/file").content)
    assert letmap.SOPClassUID == PARAMETRIC_MAP and letmap.StudyInstanceUID == study_uid
    physical = read_rtdose(from_bytes(orthanc.get(f"/instances/{outputs['rtdose']['orthanc_id']}/file").content))
    let = read_let_map(letmap)
    assert let.let_kev_um.shape == physical.dose_gy.shape and float(let.let_kev_um.max()) > 1.0
    effective_ds = from_bytes(orthanc.get(f"/instances/{outputs['rtdose-effective']['orthanc_id']}/file").content)
    assert effective_ds.DoseType == "EFFECTIVE" and "Wedenberg 2013, a/b 3 Gy" in effective_ds.SeriesDescription
    effective = read_rtdose(effective_ds)
    inside = physical.dose_gy > 0.5 * physical.dose_gy.max()
    assert np.all(effective.dose_gy[inside] >= physical.dose_gy[inside] * 0.999)  # Wedenberg: RBE >= 1

    rows = orthanc.get("/rt/measurements", params={"job": job["id"], "source": "let"}).json()["items"]
    assert {(r["roi_name"], r["metric"]) for r in rows} >= {("TargetVolume", "LETd_mean"), ("TargetVolume", "L50"),
                                                            ("TargetVolume", "LETd_max")}
    # The dose-LET volume histograms, per ROI, as JSON and as a plot of one ROI; the physical dose's only.
    dose_id = outputs["rtdose"]["orthanc_id"]
    histograms = orthanc.get(f"/rt/doses/{dose_id}/dlvh").json()["histograms"]
    target = next(h for h in histograms if h["roi_name"] == "TargetVolume")
    assert target["volume_pct"][0][0] == 100.0 and target["let_sop_instance_uid"] == str(letmap.SOPInstanceUID)
    assert len(target["volume_pct"]) == len(target["dose_gy"]) and len(target["volume_pct"][0]) == len(
        target["let_kev_um"])
    plot = orthanc.get(f"/rt/doses/{dose_id}/dlvh.png", params={"roi": "TargetVolume"})
    assert plot.status_code == 200 and plot.content.startswith(b"\x89PNG")
    no_roi = orthanc.get(f"/rt/doses/{dose_id}/dlvh.png")
    assert no_roi.status_code == 400 and "TargetVolume" in no_roi.json()["error"]
    assert orthanc.get(f"/rt/doses/{dose_id}/dlvh.png", params={"roi": "Nope"}).status_code == 404
    no_let = orthanc.get(f"/rt/doses/{outputs['rtdose-effective']['orthanc_id']}/dlvh")
    assert no_let.status_code == 404 and "let: true" in no_let.json()["error"]

    analysis = orthanc.wait_job(lambda j: j["state"] in ("succeeded", "failed")
                                and j["inputs"]["dose"]["sop_instance_uid"] == str(effective_ds.SOPInstanceUID),
                                study=study_uid, kind="analysis")
    assert analysis["state"] == "succeeded", analysis["message"]


def test_let_for_a_photon_plan_is_a_400_naming_the_field(orthanc):
    case = util.small_phantom_case("let-photon")
    photon = util.photon_plan(case)
    rest_upload(orthanc.base, [photon])
    plan_id = orthanc.post("/tools/find", json={"Level": "Instance", "Query": {
        "SOPInstanceUID": str(photon.SOPInstanceUID)}}).json()[0]
    answer = orthanc.post(f"/rt/instances/{plan_id}/dose", json={"let": True})
    assert answer.status_code == 400 and "let" in answer.text and "proton plans" in answer.text
