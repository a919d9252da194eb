"""Plan requests before a job exists: workflows, parsing, automatic rules, ROI masks and plan records."""
from __future__ import annotations

import numpy as np
import pytest

from orthanc_rt.analysis.roi_masks import roi_mask, structure_masks
from orthanc_rt.dicom.rtstruct import read_structure_set
from orthanc_rt.errors import PlanRequestError
from orthanc_rt.planning import request as pr
from orthanc_rt.planning import workflows
from orthanc_rt.planning.auto_rules import AutoPlanning
from orthanc_rt.records import jobs, plans
from orthanc_rt.records.plans import PlanQuery, PlanStore
from orthanc_rt.records.tables import Job, Plan
from orthanc_rt.scheduling.submission import parse
from orthanc_rt.settings import Settings
from tests.support.cases import small_phantom_case, with_bad_rois


def refused(body: dict, match: str) -> None:
    with pytest.raises(PlanRequestError, match=match):
        parse(body)


def test_a_sound_body_gets_the_workflow_defaults():
    workflow, request = parse({"study": "1.2.3", "target_roi": "PTV", "prescription_gy": 2.0})
    assert workflow == "proton-impt" and request.gantry_angles == (0.0, 180.0)
    workflow, request = parse({"workflow": "proton-robust", "target_roi": "PTV", "prescription_gy": 60.0,
                               "fractions": 30})
    assert workflow == "proton-robust" and request.robustness == pr.Robustness(3.0, 3.0)


@pytest.mark.parametrize("body, match", [
    ({"workflow": "carbon-magic", "target_roi": "PTV", "prescription_gy": 2}, "unknown workflow 'carbon-magic'; known"),
    ({"workflow": "proton-dose", "target_roi": "PTV", "prescription_gy": 2}, r"POST /rt/instances/\{rtplan\}/dose"),
    ({"workflow": "photon-ccc", "target_roi": "PTV", "prescription_gy": 2, "spot_spacing_mm": 5},
     "spot_spacing_mm: not a parameter of workflow photon-ccc"),
    ({"target_roi": "PTV", "prescription_gy": 2, "beamlet_spacing_mm": 5},
     "beamlet_spacing_mm: not a parameter of workflow proton-impt"),
    ({"target_roi": "PTV", "prescription_gy": 0.0}, "prescription_gy must be between 0.1 and 100 Gy"),
    ({"target_roi": "PTV", "prescription_gy": "2"}, "prescription_gy must be a number"),
    ({"target_roi": "PTV", "prescription_gy": 2, "beam_count": 10}, "beam_count must be from 1 to 9"),
    ({"target_roi": "PTV", "prescription_gy": 2, "gantry_angles_deg": [0, 10, 20, 30, 40, 50, 60, 70, 80, 90]},
     "1 to 9 beams"),
    ({"target_roi": "PTV", "prescription_gy": 2, "gantry_angles_deg": "0,90"}, "gantry_angles_deg must be a list"),
    ({"target_roi": "PTV", "prescription_gy": 2, "objectives": [{"roi": "PTV", "type": "DVHMin", "dose_gy": 2}]},
     "a DVH objective needs volume_pct"),
    ({"target_roi": "PTV", "prescription_gy": 2, "objectives": [{"roi": "PTV", "type": "Dfancy", "dose_gy": 2}]},
     "type 'Dfancy' is not one of"),
    ({"target_roi": "PTV", "prescription_gy": 2, "objectives": 5}, "objectives must be a list"),
    ({"target_roi": "PTV", "prescription_gy": 2, "robustness": {"setup_mm": 3}},
     "robustness: not a parameter of workflow proton-impt"),
    ({"workflow": "proton-robust", "target_roi": "PTV", "prescription_gy": 2,
      "robustness": {"setup_mm": 0, "range_pct": 0}}, "needs robustness"),
    ({"workflow": "proton-robust", "target_roi": "PTV", "prescription_gy": 2, "robustness": 3},
     "robustness must be an object"),
    ({"target_roi": "PTV", "prescription_gy": 2, "spots": 3}, "spots: not a parameter of workflow proton-impt"),
    ({"prescription_gy": 2}, "needs target_roi"),
    ({"target_roi": ["PTV"], "prescription_gy": 2}, "target_roi must be an ROI name"),
    ({"target_roi": "PTV", "prescription_gy": 2, "final_primaries": 10}, "final_primaries must be a whole number"),
])
def test_bad_bodies_are_refused_with_the_reason(body, match):
    refused(body, match)


def test_roi_checks_list_what_the_structure_set_has():
    request = pr.PlanRequest("PTV", 2.0, objectives=(pr.Objective("Cord", "DMax", 1.0),))
    with pytest.raises(PlanRequestError, match=r"target ROI 'PTV' is not in the structure set "
                                                 r"\(available: Body, GTV\)"):
        pr.validate_rois(request, {"GTV": True, "Body": True})
    with pytest.raises(PlanRequestError, match="ROI 'PTV' has no contours"):
        pr.validate_rois(request, {"PTV": False, "Cord": True})
    with pytest.raises(PlanRequestError, match=r"objective 1 \(DMax on Cord\): ROI 'Cord' is not"):
        pr.validate_rois(request, {"PTV": True})
    pr.validate_rois(request, {"PTV": True, "Cord": True})


def test_workflows_publish_the_limits_the_validation_enforces():
    impt = {p["name"]: p for p in workflows.WORKFLOWS["proton-impt"].as_dict()["parameters"]}
    assert impt["prescription_gy"]["minimum"] == pr.PRESCRIPTION_RANGE_GY[0]
    assert impt["prescription_gy"]["maximum"] == pr.PRESCRIPTION_RANGE_GY[1] and impt["prescription_gy"]["unit"] == "Gy"
    assert impt["beam_count"]["maximum"] == pr.MAX_BEAMS and impt["beam_count"]["default"] == 2
    assert set(impt["optimizer"]["choices"]) == set(pr.OPTIMIZERS) and impt["study"]["required"]
    robust = workflows.WORKFLOWS["proton-robust"]
    assert "robustness" not in impt and "robustness" in {p.name for p in robust.parameters}
    for workflow in workflows.WORKFLOWS.values():
        status = workflow.status()
        assert isinstance(status["available"], bool) and (status["available"] or status["reason"])


RULES = {"Protocols": {"rx2": {"prescription_gy": 2.0, "beam_count": 2}, "bad": {"prescription_gy": 500}},
         "Rules": [{"Name": "ptv", "TargetPattern": "PTV.*|TargetVolume", "Workflow": "proton-impt", "Protocol": "rx2"},
                   {"Name": "off", "TargetPattern": ".*", "Workflow": "proton-impt", "Protocol": "rx2",
                    "Enabled": False},
                   {"Name": "typo", "TargetPattern": "CTV", "Workflow": "proton-impt", "Protocol": "rx3"},
                   {"Name": "absurd", "TargetPattern": "CTV", "Workflow": "proton-impt", "Protocol": "bad"},
                   {"Name": "regex", "TargetPattern": "PTV(", "Workflow": "proton-impt", "Protocol": "rx2"},
                   {"Name": "dose", "TargetPattern": "CTV", "Workflow": "proton-dose", "Protocol": "rx2"}]}


def test_planning_rules_match_whole_names_and_broken_rules_are_reported_not_run():
    auto = AutoPlanning.of(Settings.from_orthanc_config({"OrthancRT": {"AutoPlanning": RULES}}))
    assert auto.enabled
    problems = auto.problems()
    assert set(problems) == {"typo", "absurd", "regex", "dose"}
    assert "protocol 'rx3' is not in Protocols (bad, rx2)" in problems["typo"]
    assert "prescription_gy must be between" in problems["absurd"]
    assert "cannot plan automatically" in problems["dose"]
    assert [r.name for r in auto.active_rules()] == ["ptv"]
    rule = auto.active_rules()[0]
    assert rule.target_in(["Body", "ptv_60", "PTV_50"]) == "ptv_60"  # first in structure-set order, any case
    assert rule.target_in(["GTV", "myPTV"]) is None  # the whole name must match
    request = auto.request_for(rule, "PTV_50")
    assert request.target_roi == "PTV_50" and request.prescription_gy == 2.0 and request.beam_count == 2
    assert not AutoPlanning.from_config({**RULES, "Enabled": False}).active_rules()
    assert not AutoPlanning.of(Settings()).active_rules()  # off unless configured


def test_roi_masks_reproduce_the_masks_the_structure_set_was_drawn_from():
    case = small_phantom_case("masks")
    masks = structure_masks(read_structure_set(case.rtstruct), case.ct_volume)
    assert set(masks) == {"TargetVolume", "External"}
    assert np.array_equal(masks["TargetVolume"], case.target_mask)
    assert np.array_equal(masks["External"], case.external_mask)


def test_roi_masks_fill_between_coarse_contour_planes_and_stop_beyond_them():
    case = small_phantom_case("coarse")
    structure_set = read_structure_set(case.rtstruct)
    target = next(r for r in structure_set.rois if r.name == "TargetVolume")
    planes = sorted({z for z, _ in target.contours})
    kept = planes[::2]  # every other plane: 6 mm apart on a 3 mm CT
    target.contours = [(z, xy) for z, xy in target.contours if z in kept]
    mask = roi_mask(target, case.ct_volume)
    slices = np.flatnonzero(mask.any(axis=(1, 2)))
    oz, sz = case.ct_volume.origin_mm[2], case.ct_volume.spacing_mm[2]
    z = oz + sz * slices
    assert z.min() >= kept[0] - 3.0 - 1e-6 and z.max() <= kept[-1] + 3.0 + 1e-6
    assert np.all(np.diff(slices) == 1)  # no gaps between the kept planes
    assert np.array_equal(mask[slices[0]], case.target_mask[np.flatnonzero(case.target_mask.any(axis=(1, 2)))[0]])


def test_rois_without_usable_contours_give_empty_masks():
    case = small_phantom_case("bad-rois")
    masks = structure_masks(read_structure_set(with_bad_rois(case.rtstruct)), case.ct_volume)
    assert not masks["Empty"].any() and not masks["Degenerate"].any() and masks["TargetVolume"].any()


def _plan(store_url: str, name: str, study: str, workflow: str = "proton-impt", state: str | None = jobs.QUEUED):
    pid = plans.plan_id(workflow=workflow, structure_set_uid=f"1.2.{name}", ct_series_uid="1.3", request={"n": name})
    row = Plan(id=pid, job_id=jobs.job_id("plan", pid), workflow=workflow, study_instance_uid=study,
               orthanc_study_id=f"o-{study}", ct_series_instance_uid="1.3",
               structure_set_sop_instance_uid=f"1.2.{name}",
               target_roi="PTV", request={"n": name}, source="api", requested_by="phil")
    plan, created = PlanStore(store_url).record(row, actor="phil")
    if state is not None:
        jobs.JobStore(store_url).create(Job(id=row.job_id, kind="plan", state=state, params={}, inputs={},
                                            outputs={}, study_instance_uid=study))
    return plan, created


def test_plan_records_are_idempotent_filterable_and_deletions_are_kept(database_url):
    store = PlanStore(database_url)
    first, created = _plan(database_url, "a", "1.9.1")
    assert created
    again, created_again = _plan(database_url, "a", "1.9.1", state=None)
    assert not created_again and again.id == first.id
    _plan(database_url, "b", "1.9.1", workflow="proton-robust", state=jobs.FAILED)
    _plan(database_url, "c", "1.9.2", state=None)
    assert store.list(PlanQuery(study="1.9.1"))[1] == 2
    assert store.list(PlanQuery(study="o-1.9.1", status=jobs.FAILED))[1] == 1
    assert store.list(PlanQuery(workflow="proton-robust"))[0][0][0].structure_set_sop_instance_uid == "1.2.b"
    assert store.list(PlanQuery(status=plans.PENDING))[1] == 1
    assert store.mark_deleted(first.id, actor="phil", detail={})
    assert not store.mark_deleted(first.id, actor="phil", detail={})
    assert store.list(PlanQuery(status=plans.DELETED))[1] == 1 and store.list(PlanQuery(status=jobs.QUEUED))[1] == 0
    plan, job = store.with_job(first.id)
    public = plans.to_dict(plan, job)
    assert public["status"] == "deleted" and public["deleted_by"] == "phil" and public["job"]["state"] == "queued"
    revived, created = _plan(database_url, "a", "1.9.1", state=None)
    assert not created and revived.deleted_at is None


def test_primaries_bounds_follow_from_the_time_limits_and_the_measured_throughput():
    half_plan_s = 0.5 * 6 * 3600
    assert pr.DOSE_PRIMARIES_PER_S == 1.1e5 and pr.BEAMLET_PRIMARIES_PER_S == 2e4
    assert pr.MAX_FINAL_PRIMARIES == 10**9 <= half_plan_s * pr.DOSE_PRIMARIES_PER_S  # 1.19e9 rounded down
    assert pr.MAX_BEAMLET_PRIMARIES == 20_000 <= half_plan_s * pr.BEAMLET_PRIMARIES_PER_S / 7_300  # 29,600
    assert pr.MAX_DOSE_JOB_PRIMARIES == 10**9 <= 3 * 3600 * pr.DOSE_PRIMARIES_PER_S  # 1.19e9
    impt = {p["name"]: p for p in workflows.WORKFLOWS["proton-impt"].as_dict()["parameters"]}
    assert impt["beamlet_primaries"]["maximum"] == pr.MAX_BEAMLET_PRIMARIES
    assert impt["final_primaries"]["maximum"] == pr.MAX_FINAL_PRIMARIES
    assert impt["objectives"]["max_items"] == pr.MAX_OBJECTIVES and impt["gantry_angles_deg"]["max_items"] == 9
    dose = {p["name"]: p for p in workflows.WORKFLOWS["proton-dose"].as_dict()["parameters"]}
    assert dose["primaries"]["maximum"] == pr.MAX_DOSE_JOB_PRIMARIES


BASE = {"target_roi": "PTV", "prescription_gy": 2}


@pytest.mark.parametrize("fields, match", [
    ({"beamlet_primaries": 10**12}, r"beamlet_primaries must be at most 2e\+04"),
    ({"beamlet_primaries": 20_001}, r"beamlet_primaries must be at most 2e\+04"),
    ({"final_primaries": 10**9 + 1}, r"final_primaries must be at most 1e\+09"),
    ({"final_primaries": float("inf")}, "final_primaries must be a whole number"),
    ({"final_primaries": True}, "final_primaries must be a whole number"),
    ({"objectives": [{"roi": "PTV", "type": "DMin", "dose_gy": 2}] * 51}, "objectives: at most 50, not 51"),
    ({"objectives": [{"roi": "PTV", "type": "DMin", "dose_gy": 2}] * 10_000}, "objectives: at most 50, not 10000"),
    ({"target_roi": "P" * 65}, "target_roi must be an ROI name"),
    ({"objectives": [{"roi": "R" * 65, "type": "DMin", "dose_gy": 2}]}, "objective 1: roi must be an ROI name"),
    ({"objectives": [{"roi": "PTV", "type": "DMin", "dose_gy": 2, "robust": "yes"}]}, "robust must be true"),
    ({"gantry_angles_deg": [10**400]}, "gantry_angles_deg must be a list of numbers"),
    ({"gantry_angles_deg": [1e300]}, "beam angles must be finite degrees within"),
])
def test_bounded_fields_are_refused_by_name(fields, match):
    refused({**BASE, **fields}, match)


def test_the_bounds_themselves_are_accepted():
    objectives = [{"roi": "PTV", "type": "DMin", "dose_gy": 2, "robust": False}] * pr.MAX_OBJECTIVES
    _, request = parse({**BASE, "beamlet_primaries": pr.MAX_BEAMLET_PRIMARIES, "objectives": objectives,
                        "final_primaries": pr.MAX_FINAL_PRIMARIES, "target_roi": "P" * pr.MAX_ROI_NAME})
    assert len(request.objectives) == pr.MAX_OBJECTIVES
