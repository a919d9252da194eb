"""Planning through Orthanc: a plan request becomes an optimised RTPLAN and its RTDOSE in the study.

Real Orthanc with the plugin, Redis, an RQ worker, PostgreSQL and real
MCsquare + OpenTPS optimisation on the small water phantom (3 mm voxels, a
15 mm target). Cost on the 2-core machine: the module's plan (1 beam, about
270 spots, 1000 primaries per spot for the beamlets, 4e5 for the final dose)
takes 20-40 s; its round-trip dose another ~10 s; the other plans are
cancelled early or fail early; the deletion test's stops at the first stage
boundary after the study is deleted.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from orthanc_rt.analysis.dvh_metrics import roi_dose_metrics
from orthanc_rt.analysis.roi_masks import structure_masks
from orthanc_rt.dicom.dose import read_rtdose
from orthanc_rt.dicom.rtstruct import read_structure_set
from orthanc_rt.dicom.serialize import from_bytes
from tests.support import cases as util
from tests.support.senders import rest_upload
from tests.support.stack import AUTO_PLAN_ROI, Client, mcsquare_running

pytestmark = pytest.mark.integration

RX_GY = 2.0
FINAL_PRIMARIES = 400_000
REQUEST = {"target_roi": "TargetVolume", "prescription_gy": RX_GY, "beam_count": 1, "beamlet_primaries": 1000,
           "final_primaries": FINAL_PRIMARIES, "max_iterations": 150,
           # 0.5 % is beyond 4e5 primaries here: the cap decides, as the round trip below wants, and the QA says so.
           "final_uncertainty_pct": 0.5,
           "goals": [{"roi": "TargetVolume", "metric": "D95", "min": 0.9 * RX_GY},
                     {"roi": "External", "metric": "V2.5Gy", "max": 0.0}]}


def _wait_plan(orthanc, plan_id: str, states=("succeeded", "failed", "cancelled"), timeout_s: float = 600):
    deadline = time.monotonic() + timeout_s
    plan: dict[str, Any] = {}
    while time.monotonic() < deadline:
        plan = orthanc.get(f"/rt/plans/{plan_id}").json()
        if plan["status"] in states:
            return plan
        time.sleep(1)
    raise AssertionError(f"plan {plan_id} not in {states} after {timeout_s} s: {plan}")


def _dataset(orthanc, instance_id: str):
    return from_bytes(orthanc.get(f"/instances/{instance_id}/file").content)


@pytest.fixture(scope="module")
def planned(rt_stack):
    orthanc = Client(rt_stack.orthanc_url)
    case = util.small_phantom_case("plan-rest")
    rest_upload(orthanc.base, [*case.ct, case.rtstruct])
    time.sleep(rt_stack.stable_age_s + 1)
    r = orthanc.post("/rt/plans", json={"study": case.study.study_instance_uid, **REQUEST})
    assert r.status_code == 201, r.text
    plan = _wait_plan(orthanc, r.json()["id"])
    assert plan["status"] == "succeeded", plan["job"]
    return case, plan


def test_structure_sets_route_lists_rois_with_contours_and_the_ct(orthanc, planned):
    case, _ = planned
    body = orthanc.get(f"/rt/studies/{case.study.study_instance_uid}/structure-sets").json()
    [structure_set] = body["structure_sets"]
    rois = {r["name"]: r["contours"] for r in structure_set["rois"]}
    assert rois["TargetVolume"] == int(case.target_mask.any(axis=(1, 2)).sum())  # one contour per slice
    assert rois["External"] == int(case.external_mask.any(axis=(1, 2)).sum())
    assert structure_set["ct_series_instance_uid"] == str(case.ct[0].SeriesInstanceUID)
    assert [c["slices"] for c in body["ct_series"]] == [len(case.ct)]


def test_the_plan_and_its_dose_are_stored_and_name_each_other(orthanc, planned):
    case, plan = planned
    rtplan = _dataset(orthanc, plan["results"]["rtplan"]["orthanc_id"])
    rtdose = _dataset(orthanc, plan["results"]["rtdose"]["orthanc_id"])
    ct_frame = str(case.ct[0].FrameOfReferenceUID)
    assert rtplan.SOPClassUID == "1.2.840.10008.5.1.4.1.1.481.8" and rtplan.FrameOfReferenceUID == ct_frame
    assert rtdose.FrameOfReferenceUID == ct_frame and rtdose.StudyInstanceUID == case.study.study_instance_uid
    assert rtplan.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID == case.rtstruct.SOPInstanceUID
    assert rtplan.ReferencedDoseSequence[0].ReferencedSOPInstanceUID == rtdose.SOPInstanceUID
    assert rtdose.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID == rtplan.SOPInstanceUID
    beam = rtplan.IonBeamSequence[0]
    assert beam.ScanMode == "MODULATED" and float(beam.IonControlPointSequence[0].GantryAngle) == 0.0
    spots = sum(int(cp.NumberOfScanSpotPositions) for cp in beam.IonControlPointSequence[::2])
    mu = sum(float(np.sum(cp.ScanSpotMetersetWeights)) for cp in beam.IonControlPointSequence[::2])
    qa = plan["qa"]
    assert spots == qa["spots"] == qa["beams"][0]["spots"] and qa["layers"] == len(beam.IonControlPointSequence) // 2
    assert mu == pytest.approx(float(rtplan.FractionGroupSequence[0].ReferencedBeamSequence[0].BeamMeterset),
                               rel=1e-4)
    # Our plan arrives with its dose: no dose job for it (the arrival was handled within a second or two).
    time.sleep(2)
    assert not [j for j in orthanc.jobs(kind="dose", study=case.study.study_instance_uid)]


def test_qa_summary_shows_a_covered_target_and_the_optimiser_record(orthanc, planned):
    _, plan = planned
    qa = plan["qa"]
    target = qa["target"]
    # Few primaries (noise of a few %): the quality bar is tests/planning/test_impt_simple_fantom.py.
    assert target["D95"] >= 0.90 * RX_GY and target["D2"] <= 1.15 * RX_GY, target
    assert abs(target["Dmean"] - RX_GY) < 0.05 * RX_GY and target["V95%"] > 80, target
    assert 0 < target["HI"] < 0.3 and target["CI_RTOG"] >= 1.0, target
    assert set(qa["rois"]) == {"TargetVolume", "External"} and qa["rois"]["External"]["Dmax"] >= target["Dmax"]
    assert qa["optimizer"]["iterations"] >= 1
    assert qa["optimizer"]["objective_final"] < qa["optimizer"]["objective_initial"]
    assert [b["gantry_angle_deg"] for b in qa["beams"]] == [0.0]
    assert qa["primaries"] == {"beamlets_per_spot": 1000, "final": FINAL_PRIMARIES}


def test_qa_summary_states_the_final_dose_noise_and_the_clinical_goals(orthanc, planned):
    _, plan = planned
    qa = plan["qa"]
    noise = qa["final_dose_uncertainty"]
    assert noise["target_pct"] == 0.5 and noise["primaries_cap"] == FINAL_PRIMARIES and "50 %" in noise["definition"]
    assert 0.5 < noise["reached_pct"] < 10, noise  # the cap came first
    rtdose = _dataset(orthanc, plan["results"]["rtdose"]["orthanc_id"])
    assert rtdose.SeriesDescription == f"IMPT dose {noise['reached_pct']:.2g} % stat. unc. (Orthanc-RT)"
    d95, hot = qa["goals"]
    assert d95 == {"roi": "TargetVolume", "metric": "D95", "min": 0.9 * RX_GY, "unit": "Gy",
                   "value": pytest.approx(qa["target"]["D95"], abs=1e-3), "passed": True}
    # 2.5 Gy is 125 % of the prescription: no voxel of a 2 Gy plan is expected there, and a zero limit fails on one.
    assert hot["unit"] == "%" and hot["passed"] is (hot["value"] == 0.0)
    assert qa["goals_passed"] is (d95["passed"] and hot["passed"])
    assert qa["optimization_grid_mm"] == [3.0, 3.0, 3.0] and "notes" not in qa


def test_the_same_request_finds_the_same_plan(orthanc, planned):
    case, plan = planned
    r = orthanc.post("/rt/plans", json={"study": case.study.study_instance_uid, **REQUEST})
    assert r.status_code == 200 and r.json()["id"] == plan["id"] and r.json()["status"] == "succeeded"
    listed = orthanc.get("/rt/plans", params={"study": case.study.study_instance_uid}).json()
    assert [p["id"] for p in listed["items"]] == [plan["id"]]
    assert orthanc.get("/rt/plans", params={"workflow": "proton-robust",
                                            "study": case.study.study_instance_uid}).json()["total"] == 0


def test_round_trip_the_stored_rtplan_gives_the_planned_dose(orthanc, planned):
    """The RTPLAN read back by the dose path (reader, MCsquare from the file) gives the optimiser's final dose.

    Both doses are independent MCsquare runs of 4e5 primaries: they differ by
    noise only. Tolerances: the target's mean dose within 2 % (a mean over
    ~125 voxels of noise of a few % each) and the high-dose voxels' RMS
    difference below 6 % of the prescription.
    """
    case, plan = planned
    r = orthanc.post(f"/rt/instances/{plan['results']['rtplan']['orthanc_id']}/dose",
                     json={"primaries": FINAL_PRIMARIES, "crop_grid": False})  # the planned dose's grid
    assert r.status_code == 200, r.text
    job = orthanc.wait_final(r.json()["job"]["id"], timeout_s=300)
    assert job["state"] == "succeeded", job["message"]
    planned_dose = read_rtdose(_dataset(orthanc, plan["results"]["rtdose"]["orthanc_id"]))
    again = read_rtdose(_dataset(orthanc, job["outputs"]["rtdose"]["orthanc_id"]))
    assert again.dose_gy.shape == planned_dose.dose_gy.shape and again.origin_mm == planned_dose.origin_mm
    target = structure_masks(read_structure_set(case.rtstruct), case.ct_volume)["TargetVolume"]
    a, b = roi_dose_metrics(planned_dose.dose_gy, target), roi_dose_metrics(again.dose_gy, target)
    assert abs(a["Dmean"] - b["Dmean"]) < 0.02 * a["Dmean"], (a, b)
    high = planned_dose.dose_gy > 0.5 * RX_GY
    rms = float(np.sqrt(np.mean((planned_dose.dose_gy[high] - again.dose_gy[high]) ** 2)))
    assert rms < 0.06 * RX_GY, rms


@pytest.mark.parametrize("change, message", [
    ({"target_roi": "PTV_70"}, "target ROI 'PTV_70' is not in any structure set of the study (available: External, "
                               "TargetVolume)"),
    ({"prescription_gy": 1000}, "prescription_gy must be between 0.1 and 100 Gy"),
    ({"beam_count": 12}, "beam_count must be from 1 to 9"),
    ({"objectives": [{"roi": "TargetVolume", "type": "DVHMax", "dose_gy": 2.1}]}, "needs volume_pct"),
    ({"objectives": [{"roi": "Cord", "type": "DMax", "dose_gy": 1}]}, "ROI 'Cord' is not in the structure set "
                                                                       "(available: External, TargetVolume)"),
    ({"workflow": "proton-fancy"}, "unknown workflow 'proton-fancy'"),
    ({"study": "1.2.3.4.5.6"}, "study 1.2.3.4.5.6 is not in Orthanc"),
    ({"structure_set": "1.2.3"}, "structure_set 1.2.3 is not an RTSTRUCT of the study"),
])
def test_bad_requests_answer_400_and_record_nothing(orthanc, planned, change, message):
    case, _ = planned
    before = orthanc.get("/rt/plans").json()["total"]
    r = orthanc.post("/rt/plans", json={"study": case.study.study_instance_uid, **REQUEST, **change})
    assert r.status_code == 400 and message in r.json()["error"], r.text
    assert orthanc.get("/rt/plans").json()["total"] == before


def test_roi_without_contours_and_ct_without_structure_set_are_refused(orthanc, rt_stack):
    case = util.small_phantom_case("plan-bad-inputs")
    bad = util.with_bad_rois(case.rtstruct)
    rest_upload(orthanc.base, [*case.ct, bad])
    r = orthanc.post("/rt/plans", json={"study": case.study.study_instance_uid, **REQUEST, "target_roi": "Empty"})
    assert r.status_code == 400 and "ROI 'Empty' has no contours" in r.json()["error"], r.text
    ct_only = util.small_phantom_case("plan-ct-only")
    rest_upload(orthanc.base, ct_only.ct)
    r = orthanc.post("/rt/plans", json={"study": ct_only.study.study_instance_uid, **REQUEST})
    assert r.status_code == 400 and "the study has no usable RTSTRUCT" in r.json()["error"], r.text
    assert orthanc.get("/system").status_code == 200


def test_batch_plans_each_study_and_reports_each_failure(orthanc, planned):
    case, _ = planned
    ct_only = util.small_phantom_case("plan-ct-only")  # stored by the test above, or now
    rest_upload(orthanc.base, ct_only.ct)
    request = {**REQUEST, "prescription_gy": 1.5}
    r = orthanc.post("/rt/plans/batch", json={"studies": [case.study.study_instance_uid,
                                                          ct_only.study.study_instance_uid, "1.2.3.4.5.7"],
                                              "request": request})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["created"], body["existing"], body["failed"]) == (1, 0, 2)
    first, ct_only_result, missing = body["results"]
    assert first["plan"]["request"]["prescription_gy"] == 1.5 and first["plan"]["source"] == "batch"
    assert "no usable RTSTRUCT" in ct_only_result["error"] and "not in Orthanc" in missing["error"]
    # Deleting cancels its job (and keeps the record).
    deleted = orthanc.delete(f"/rt/plans/{first['plan']['id']}").json()
    assert deleted["deleted"] and deleted["plan"]["status"] == "deleted"
    assert deleted["plan"]["job"]["state"] == "cancelled"
    assert orthanc.get(f"/rt/plans/{first['plan']['id']}").json()["status"] == "deleted"
    assert orthanc.delete(f"/rt/plans/{first['plan']['id']}").status_code == 409
    # A bad shared request refuses the whole batch.
    r = orthanc.post("/rt/plans/batch", json={"studies": [case.study.study_instance_uid],
                                              "request": {**request, "beam_count": 0}})
    assert r.status_code == 400 and "beam_count" in r.json()["error"]
    r = orthanc.post("/rt/plans/batch", json={"studies": [f"1.2.{k}" for k in range(101)], "request": request})
    assert r.status_code == 400 and "1 to 100" in r.json()["error"]


def test_a_rule_plans_a_matching_structure_set_once(orthanc, rt_stack):
    case = util.small_phantom_case("plan-auto")
    rtstruct = util.with_roi_renamed(case.rtstruct, "TargetVolume", AUTO_PLAN_ROI)
    rest_upload(orthanc.base, [*case.ct, rtstruct])
    deadline = time.monotonic() + 60
    found: list = []
    while time.monotonic() < deadline and not found:
        found = orthanc.get("/rt/plans", params={"study": case.study.study_instance_uid}).json()["items"]
        time.sleep(0.5)
    assert len(found) == 1, found
    plan = found[0]
    assert plan["source"] == "rule:autoplan-test" and plan["target_roi"] == AUTO_PLAN_ROI
    assert plan["request"]["beam_count"] == 1 and plan["requested_by"] == "auto-planning"
    # The same structure set again, and its CT series becoming stable: still one plan.
    orthanc.delete(f"/instances/{orthanc.study_instances(case.study.study_instance_uid, 'RTSTRUCT')[0]}")
    rest_upload(orthanc.base, [rtstruct])
    time.sleep(rt_stack.stable_age_s + 3)
    again = orthanc.get("/rt/plans", params={"study": case.study.study_instance_uid}).json()
    assert again["total"] == 1 and again["items"][0]["id"] == plan["id"]
    # An unmatched structure set is not planned.
    other = util.small_phantom_case("plan-auto-nomatch")
    rest_upload(orthanc.base, [*other.ct, other.rtstruct])
    time.sleep(rt_stack.stable_age_s + 3)
    assert orthanc.get("/rt/plans", params={"study": other.study.study_instance_uid}).json()["total"] == 0
    orthanc.delete(f"/rt/plans/{plan['id']}")


def test_a_study_deleted_while_its_plan_runs_leaves_nothing_behind(orthanc, rt_stack):
    case = util.small_phantom_case("plan-deleted")
    rest_upload(orthanc.base, [*case.ct, case.rtstruct])
    time.sleep(rt_stack.stable_age_s + 1)
    r = orthanc.post("/rt/plans", json={"study": case.study.study_instance_uid, **REQUEST,
                                        "beamlet_primaries": 5_000})
    assert r.status_code == 201, r.text
    plan = _wait_plan(orthanc, r.json()["id"], states=("running",), timeout_s=600)
    study_id = orthanc.post("/tools/lookup", data=case.study.study_instance_uid).json()[0]["ID"]
    assert orthanc.delete(f"/studies/{study_id}").status_code == 200
    plan = _wait_plan(orthanc, plan["id"], timeout_s=600)
    assert plan["status"] == "failed", plan
    assert "left Orthanc" in plan["job"]["message"] or "no longer in Orthanc" in plan["job"]["message"]
    assert plan["results"] == {}
    leftovers = orthanc.post("/tools/find", json={"Level": "Instance", "Query": {
        "StudyInstanceUID": case.study.study_instance_uid}}).json()
    assert leftovers == []
    assert orthanc.get("/system").status_code == 200


def test_deleting_a_running_plan_stops_its_mcsquare(orthanc, rt_stack):
    case = util.small_phantom_case("plan-cancel")
    rest_upload(orthanc.base, [*case.ct, case.rtstruct])
    time.sleep(rt_stack.stable_age_s + 1)
    r = orthanc.post("/rt/plans", json={"study": case.study.study_instance_uid, **REQUEST,
                                        "beamlet_primaries": 20_000})  # the most allowed: slow enough
    assert r.status_code == 201, r.text
    plan_id = r.json()["id"]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        plan = orthanc.get(f"/rt/plans/{plan_id}").json()
        if plan["job"]["stage"].startswith("computing beamlets") and mcsquare_running(rt_stack.data_dir):
            break
        time.sleep(0.3)
    else:
        pytest.fail(f"the beamlets never started: {plan}")
    answer = orthanc.delete(f"/rt/plans/{plan_id}").json()
    assert answer["deleted"] and answer["job_cancelled"]["cancelled"], answer
    deadline = time.monotonic() + 20
    while mcsquare_running(rt_stack.data_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not mcsquare_running(rt_stack.data_dir), "MCsquare still running after the plan was deleted"
    plan = orthanc.get(f"/rt/plans/{plan_id}").json()
    assert plan["status"] == "deleted" and plan["job"]["state"] == "cancelled" and plan["results"] == {}
    assert orthanc.study_instances(case.study.study_instance_uid, "RTPLAN") == []


def test_a_robust_plan_reports_every_error_scenario(orthanc, rt_stack):
    """Wiring through REST (the optimisation itself is tests/planning/test_impt_robust.py): 300 protons per spot
    for the nominal and 20 scenario beamlet sets, 2e5 for the final dose; about 40 s."""
    case = util.small_phantom_case("plan-robust")
    rest_upload(orthanc.base, [*case.ct, case.rtstruct])
    time.sleep(rt_stack.stable_age_s + 1)
    r = orthanc.post("/rt/plans", json={"study": case.study.study_instance_uid, **REQUEST, "workflow": "proton-robust",
                                        "robustness": {"setup_mm": 2.0, "range_pct": 2.5},
                                        "beamlet_primaries": 300, "final_primaries": 200_000})
    assert r.status_code == 201, r.text
    assert r.json()["request"]["robustness"] == {"setup_mm": 2.0, "range_pct": 2.5}
    plan = _wait_plan(orthanc, r.json()["id"])
    assert plan["status"] == "succeeded", plan["job"]
    robustness = plan["qa"]["robustness"]
    assert robustness["scenarios"] == 20 == len(robustness["target_D95_gy"]) == len(robustness["target_D5_gy"])
    assert robustness["worst_D95_gy"] == min(robustness["target_D95_gy"])
    assert robustness["worst_D5_gy"] == max(robustness["target_D5_gy"]) >= robustness["worst_D95_gy"]
    rtplan = _dataset(orthanc, plan["results"]["rtplan"]["orthanc_id"])
    assert rtplan.RTPlanLabel == "RIMPT"
    assert orthanc.get("/rt/plans", params={"workflow": "proton-robust", "study": case.study.study_instance_uid}
                       ).json()["total"] == 1


def test_a_photon_plan_is_stored_as_an_rt_plan_with_its_dose(orthanc, rt_stack):
    """photon-ccc through REST: the CCC engine (deterministic, no noise) on the small phantom, 3 beams, 5 mm
    bixels; a few seconds of engine time."""
    assert orthanc.get("/rt/workflows/photon-ccc").json()["status"]["available"]
    case = util.small_phantom_case("plan-photon")
    rest_upload(orthanc.base, [*case.ct, case.rtstruct])
    time.sleep(rt_stack.stable_age_s + 1)
    r = orthanc.post("/rt/plans", json={"study": case.study.study_instance_uid, "workflow": "photon-ccc",
                                        "target_roi": "TargetVolume", "prescription_gy": RX_GY, "beam_count": 3})
    assert r.status_code == 201, r.text
    plan = _wait_plan(orthanc, r.json()["id"])
    assert plan["status"] == "succeeded", plan["job"]
    qa = plan["qa"]
    assert qa["target"]["D95"] >= 0.95 * RX_GY and qa["target"]["D2"] <= 1.07 * RX_GY, qa["target"]
    assert [b["gantry_angle_deg"] for b in qa["beams"]] == [0.0, 120.0, 240.0] and qa["beamlets"] > 0
    rtplan = _dataset(orthanc, plan["results"]["rtplan"]["orthanc_id"])
    rtdose = _dataset(orthanc, plan["results"]["rtdose"]["orthanc_id"])
    assert rtplan.SOPClassUID == "1.2.840.10008.5.1.4.1.1.481.5" and len(rtplan.BeamSequence) == 3
    assert rtplan.ReferencedDoseSequence[0].ReferencedSOPInstanceUID == rtdose.SOPInstanceUID
    assert rtdose.ReferencedRTPlanSequence[0].ReferencedSOPClassUID == rtplan.SOPClassUID
    assert "not deliverable as is" in rtplan.RTPlanDescription  # relative fluence, no machine calibration
    r = orthanc.post("/rt/plans", json={"study": case.study.study_instance_uid, "workflow": "photon-ccc",
                                        "target_roi": "TargetVolume", "prescription_gy": RX_GY,
                                        "final_primaries": 1000})
    assert r.status_code == 400 and "final_primaries: not a parameter of workflow photon-ccc" in r.json()["error"]
