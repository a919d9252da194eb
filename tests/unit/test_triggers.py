"""The trigger rules (orthanc_rt.scheduling.triggers) through the plugin's change table (plugin/events.py), against
an in-memory Orthanc (tests/support/fake_orthanc.py, pinned to the real one by tests/integration/test_fake_orthanc.py)
with real datasets, a real database and a real Redis queue."""
from __future__ import annotations

import dataclasses
from typing import Any

import psycopg
import pytest

from orthanc_rt.dicom.uids import derive_uid
from orthanc_rt.errors import ValidationError
from orthanc_rt.records import audit, db, jobs
from orthanc_rt.records.jobs import JobQuery, JobStore
from orthanc_rt.records.plans import PlanQuery
from orthanc_rt.records.tables import Check, Job
from orthanc_rt.scheduling.params import AutoComputeFrom
from orthanc_rt.scheduling.queue import Dispatcher
from orthanc_rt.scheduling.triggers import Triggers
from orthanc_rt.settings import AutoAnalysis, AutoDose, Settings
from plugin.context import Context
from plugin.events import NEW_INSTANCE, STABLE_SERIES, EventDispatcher, trigger_table
from tests.support.cases import (
    instance_variant,
    on_other_frame,
    tps_dose_of,
    trigger_case,
    with_roi_renamed,
    with_sr_template,
)
from tests.support.fake_orthanc import FakeOrthanc
from tests.support.services import PrivatePostgres

CASE = trigger_case()
PTV_RULE = {"Name": "ptv", "TargetPattern": "PTV", "Workflow": "proton-impt", "Protocol": "one-beam"}
PROTOCOLS = {"one-beam": {"prescription_gy": 2.0, "beam_count": 1}, "two-beams": {"prescription_gy": 3.0}}


class World:
    """Orthanc (fake), the database and Redis, and the plugin's dispatcher of change events."""

    def __init__(self, url: str, redis_url: str, settings: Settings):
        self.orthanc = FakeOrthanc()
        self.ctx = Context.create(self.orthanc, settings, JobStore(url), Dispatcher(redis_url, job_timeout_s=60))
        triggers = Triggers(self.orthanc, self.ctx.scheduler, settings, planner=self.ctx.submitter,
                            check_config=self.ctx.check_config, compute_from=self.ctx.compute_from)
        self.events = EventDispatcher(self.orthanc, trigger_table(triggers))

    def arrive(self, *datasets: Any) -> list[dict[str, Any]]:
        """Store each dataset, then hand Orthanc's NEW_INSTANCE event to the plugin, as Orthanc does."""
        stored = []
        for ds in datasets:
            stored.append(self.orthanc.store(ds))
            self.events.on_change(NEW_INSTANCE, stored[-1]["ID"])
        return stored

    def jobs(self, kind: str | None = None) -> list:
        return self.ctx.store.list(JobQuery(kind=kind, limit=500))[0]

    def plans(self) -> list:
        return [plan for plan, _ in self.ctx.plans.list(PlanQuery(limit=500))[0]]


@pytest.fixture
def world(tmp_path, redis_url):
    def make(**settings: Any) -> World:
        url = f"sqlite:///{tmp_path / f'rt-{len(made)}.sqlite'}"
        db.upgrade(url)
        made.append(World(url, redis_url, Settings(database_url=url, **settings)))
        return made[-1]

    made: list[World] = []
    return make


def _uid(ds: Any) -> str:
    return str(ds.SOPInstanceUID)


def test_an_ion_plan_becomes_one_dose_job(world):
    w = world()
    w.arrive(*CASE.dvh.ct[:2], CASE.ion_plan)
    [job] = w.jobs()
    assert (job.kind, job.source, job.requested_by) == ("dose", "auto",
                                                        "auto-dose; REST upload (no user: authentication off)")
    assert job.inputs["plan"]["sop_instance_uid"] == _uid(CASE.ion_plan)
    assert job.params["primaries"] == AutoDose().primaries
    w.arrive(CASE.ion_plan)  # stored again: the same job
    assert [j.id for j in w.jobs()] == [job.id]


def test_a_photon_plan_gets_a_dose_job_too(world):
    w = world()
    w.arrive(CASE.photon_plan)
    assert [(j.kind, j.inputs["plan"]["sop_instance_uid"]) for j in w.jobs()] == [("dose", _uid(CASE.photon_plan))]


def test_a_plan_stored_with_its_dose_is_still_computed(world):
    """A TPS exports every plan with its dose: the dose names no maker, so the plan gets its dose job."""
    w = world()
    w.arrive(CASE.dvh.rtdose, CASE.plan_with_dose)
    assert [j.inputs["plan"]["sop_instance_uid"] for j in w.jobs("dose")] == [_uid(CASE.plan_with_dose)]


def test_a_plan_an_orthanc_rt_job_made_gets_no_dose_job_nor_check(world):
    w = world()
    maker = w.ctx.store.create(Job(id="plan-made-here", kind="plan", state=jobs.SUCCEEDED,
                                   study_instance_uid=str(CASE.ion_plan.StudyInstanceUID)))[0]
    ours = instance_variant(CASE.ion_plan, "ours")
    ours.SOPInstanceUID = derive_uid("orthanc-rt", maker.id, "rtplan")
    w.arrive(ours, tps_dose_of(ours, CASE.dvh.rtdose))
    assert w.jobs("dose") == [] and w.jobs("check") == []


@pytest.mark.parametrize("order", ["plan first", "dose first"])
def test_a_tps_plan_and_its_dose_become_one_recompute_and_one_check(world, order):
    w = world()
    plan, dose = CASE.ion_plan, tps_dose_of(CASE.ion_plan, CASE.dvh.rtdose)
    arrivals = (plan, dose) if order == "plan first" else (dose, plan)
    w.arrive(*arrivals)
    [recompute], [check] = w.jobs("dose"), w.jobs("check")
    assert check.state == jobs.WAITING and recompute.id in check.message
    w.arrive(*arrivals)  # the same export sent again: one recompute, one check
    assert [j.id for j in w.jobs("dose")] == [recompute.id] and [j.id for j in w.jobs("check")] == [check.id]
    assert recompute.inputs["plan"]["sop_instance_uid"] == check.inputs["plan"]["sop_instance_uid"] == _uid(plan)
    assert check.inputs["recompute_job"] == recompute.id
    assert recompute.params["primaries"] == Settings().auto_dose.primaries  # the automatic dose serves the check


def test_a_finished_check_runs_again_for_a_new_dose_of_its_plan_not_for_the_same_one(world):
    w = world()
    plan, dose = CASE.ion_plan, tps_dose_of(CASE.ion_plan, CASE.dvh.rtdose)
    w.arrive(plan, dose)
    [check] = w.jobs("check")
    w.ctx.store.transition(check.id, jobs.SUCCEEDED, from_states=[jobs.WAITING], actor="unit")
    w.ctx.checks.record(Check(id=check.id, mode="recompute", verdict="pass", plan_sop_instance_uid=_uid(plan),
                              reference_sop_instance_uids={"uids": [_uid(dose)]}), actor="unit")
    w.arrive(dose)  # the same export again
    assert w.ctx.store.get(check.id).state == jobs.SUCCEEDED
    w.arrive(tps_dose_of(plan, CASE.dvh.rtdose, name="re-export"))  # the TPS recomputed and sent a new dose
    again = w.ctx.store.get(check.id)
    assert again.state == jobs.QUEUED and "checking again" in again.message
    assert [j.id for j in w.jobs("check")] == [check.id]


def test_a_difference_or_gamma_dose_is_never_analysed(world):
    w = world()
    difference = instance_variant(CASE.dvh.rtdose, "difference")
    difference.DoseType = "ERROR"
    w.arrive(difference, CASE.dvh.rtstruct)
    assert [j.inputs["dose"]["sop_instance_uid"] for j in w.jobs("analysis")] == []


def test_exports_stored_while_the_plugin_was_down_get_their_check_at_start_up(world):
    w = world()
    plan, dose = CASE.ion_plan, tps_dose_of(CASE.ion_plan, CASE.dvh.rtdose)
    w.orthanc.store(plan), w.orthanc.store(dose), w.orthanc.store(CASE.photon_plan)  # no change events
    triggers = Triggers(w.orthanc, w.ctx.scheduler, w.ctx.settings)
    [check_id] = triggers.check_stored_plans()
    assert [j.id for j in w.jobs("check")] == [check_id]
    assert triggers.check_stored_plans() == [check_id]  # found, not made again


def test_automatic_jobs_name_who_stored_what_set_them_off(world):
    w = world()
    plan = w.orthanc.store(CASE.ion_plan, origin={"Origin": "DicomProtocol", "RemoteAET": "RT_TPS",
                                                  "RemoteIP": "10.1.2.3"})
    w.events.on_change(NEW_INSTANCE, plan["ID"])
    dose = w.orthanc.store(tps_dose_of(CASE.ion_plan, CASE.dvh.rtdose),
                           origin={"Origin": "RestApi", "HttpUsername": "dora"})
    w.events.on_change(NEW_INSTANCE, dose["ID"])
    [recompute], [check] = w.jobs("dose"), w.jobs("check")
    assert recompute.requested_by == "auto-dose; C-STORE from RT_TPS (10.1.2.3)"
    assert check.requested_by == "auto-check; REST upload by dora"


def _stored_by(w: World, ds: Any, **origin: str) -> None:
    w.events.on_change(NEW_INSTANCE, w.orthanc.store(ds, origin=origin)["ID"])


def _refusals(w: World) -> list[dict[str, Any]]:
    return sorted(audit.query(w.ctx.store.url, audit.AuditQuery(action=audit.AUTO_COMPUTE_REFUSED))[0],
                  key=lambda e: e["seq"])


def test_only_the_configured_sources_start_monte_carlo_and_refusals_are_audited(world):
    w = world(auto_compute_from={"RestUsers": ["dora"], "CallingAeTitles": ["RT_TPS"], "StowRs": False})
    _stored_by(w, CASE.ion_plan, Origin="DicomProtocol", RemoteAET="MODALITY_X", RemoteIP="10.9.9.9")
    _stored_by(w, instance_variant(CASE.ion_plan, "by-vic"), Origin="RestApi", HttpUsername="vic")
    _stored_by(w, instance_variant(CASE.ion_plan, "by-stow"), Origin="Plugins")
    assert w.jobs("dose") == []
    refused = _refusals(w)
    assert sorted(e["actor"] for e in refused) == ["C-STORE from MODALITY_X (10.9.9.9)", "REST upload by vic",
                                                "STOW-RS or another plugin"]
    assert all(e["after"]["rule"] == "auto-dose" for e in refused)
    _stored_by(w, instance_variant(CASE.ion_plan, "by-tps"), Origin="DicomProtocol", RemoteAET="RT_TPS")
    _stored_by(w, instance_variant(CASE.ion_plan, "by-dora"), Origin="RestApi", HttpUsername="dora")
    assert sorted(j.requested_by for j in w.jobs("dose")) == ["auto-dose; C-STORE from RT_TPS (?)",
                                                              "auto-dose; REST upload by dora"]


def test_a_refused_source_starts_no_check_and_no_plan_but_its_upload_is_analysed(world):
    w = world(auto_compute_from={"CallingAeTitles": ["RT_TPS"]}, auto_planning=_planning(PTV_RULE))
    _stored_by(w, CASE.ion_plan, Origin="DicomProtocol", RemoteAET="RT_TPS")
    _stored_by(w, tps_dose_of(CASE.ion_plan, CASE.dvh.rtdose), Origin="DicomProtocol", RemoteAET="OTHER_SCU")
    assert len(w.jobs("dose")) == 1 and w.jobs("check") == []  # the plan's dose: its sender may
    for ds in CASE.dvh.ct:
        w.orthanc.store(ds, origin={"Origin": "DicomProtocol", "RemoteAET": "OTHER_SCU"})
    _stored_by(w, CASE.dvh.rtstruct, Origin="DicomProtocol", RemoteAET="OTHER_SCU")
    assert w.plans() == [] and w.jobs("plan") == []
    assert [r["after"]["rule"] for r in _refusals(w)] == ["auto-check", "auto-planning"]
    assert w.jobs("analysis") != []  # analyses take no Monte Carlo: every upload gets them


def test_without_the_automatic_dose_a_plan_alone_asks_no_permission(world):
    """Only a check would compute, and there is nothing to check yet: no refusal is audited for it."""
    w = world(auto_dose=AutoDose(enabled=False), auto_compute_from={"RestUsers": ["dora"]})
    _stored_by(w, CASE.ion_plan, Origin="RestApi", HttpUsername="vic")
    assert _refusals(w) == [] and w.jobs("dose") == []
    _stored_by(w, tps_dose_of(CASE.ion_plan, CASE.dvh.rtdose), Origin="RestApi", HttpUsername="vic")
    assert [r["after"]["rule"] for r in _refusals(w)] == ["auto-check"] and w.jobs("check") == []


def test_a_refused_source_configuration_starts_nothing_by_itself_and_says_why(world):
    w = world(auto_compute_from={"CallingAeTitle": ["RT_TPS"]})
    _stored_by(w, CASE.ion_plan, Origin="RestApi", HttpUsername="dora")
    assert w.jobs("dose") == []
    [refused] = _refusals(w)
    assert "OrthancRT.AutoComputeFrom.CallingAeTitle" in refused["after"]["reason"]
    with pytest.raises(ValidationError, match="RestUsers"):
        AutoComputeFrom.from_settings(Settings(auto_compute_from={"RestUsers": "dora"}))
    with pytest.raises(ValidationError, match="StowRs"):
        AutoComputeFrom.from_settings(Settings(auto_compute_from={"StowRs": "no"}))


def test_a_dose_wakes_the_waiting_checks_of_its_study(world):
    w = world()
    plan = CASE.ion_plan
    w.arrive(plan, tps_dose_of(plan, CASE.dvh.rtdose))
    [check] = w.jobs("check")
    assert check.state == jobs.WAITING
    w.arrive(tps_dose_of(plan, CASE.dvh.rtdose, summation="BEAM", beam_number=1))  # e.g. a BEAM dose of the set
    assert w.ctx.store.get(check.id).state == jobs.QUEUED


def test_no_check_for_a_photon_plan_an_absent_plan_or_when_checks_are_off(world):
    w = world()
    w.arrive(CASE.photon_plan, tps_dose_of(CASE.photon_plan, CASE.dvh.rtdose),
             tps_dose_of(CASE.plan_with_dose, CASE.dvh.rtdose))  # the second names a plan not in Orthanc
    assert w.jobs("check") == []
    off = world(dose_check={"Enabled": False})
    off.arrive(CASE.ion_plan, tps_dose_of(CASE.ion_plan, CASE.dvh.rtdose))
    assert len(off.jobs("dose")) == 1 and off.jobs("check") == []


def test_a_refused_check_configuration_turns_automatic_checks_off_and_says_why(world):
    w = world(dose_check={"DosePercent": 50})
    assert "OrthancRT.DoseCheck.DosePercent" in w.ctx.check_config.problem
    w.arrive(CASE.ion_plan, tps_dose_of(CASE.ion_plan, CASE.dvh.rtdose))
    assert w.jobs("check") == [] and len(w.jobs("dose")) == 1


def test_no_dose_job_when_automatic_dose_is_off(world):
    w = world(auto_dose=AutoDose(enabled=False))
    w.arrive(CASE.ion_plan, CASE.photon_plan)
    assert w.jobs() == []


@pytest.mark.parametrize("order", ["dose first", "structure set first"])
def test_dose_and_structure_set_on_one_frame_become_one_analysis_job(world, order):
    w = world()
    dose, structure_set = CASE.dvh.rtdose, CASE.dvh.rtstruct
    w.arrive(*((dose, structure_set) if order == "dose first" else (structure_set, dose)))
    by_state = {j.state: j for j in w.jobs("analysis")}
    paired = by_state[jobs.QUEUED]
    assert paired.inputs["dose"]["sop_instance_uid"] == _uid(dose)
    assert paired.inputs["structure_set"]["sop_instance_uid"] == _uid(structure_set)
    assert paired.inputs["dose"]["frame_of_reference_uid"] == CASE.dvh.study.frame_of_reference_uid
    if order == "dose first":  # the dose waited for a structure set; its wait is closed, naming the pair's job
        waited = by_state[jobs.SUCCEEDED]
        assert "structure_set" not in waited.inputs and waited.outputs["analysed_by"] == [paired.id]
        assert len(by_state) == 2
    else:
        assert list(by_state) == [jobs.QUEUED]


def test_the_pair_is_the_same_job_in_either_order(world):
    ids = []
    for datasets in ((CASE.dvh.rtdose, CASE.dvh.rtstruct), (CASE.dvh.rtstruct, CASE.dvh.rtdose)):
        w = world()
        w.arrive(*datasets)
        ids.append([j.id for j in w.jobs("analysis") if j.state == jobs.QUEUED])
    assert ids[0] == ids[1] and len(ids[0]) == 1


def test_a_dose_on_another_frame_waits_for_its_own_structure_set(world):
    w = world()
    w.arrive(CASE.dvh.rtstruct, on_other_frame(CASE.dvh.rtdose))
    [job] = w.jobs("analysis")
    assert job.state == jobs.WAITING and "structure_set" not in job.inputs


def test_a_measurement_report_becomes_an_sr_import_job(world):
    w = world()
    w.arrive(CASE.report)
    [job] = w.jobs()
    assert (job.kind, job.requested_by, job.inputs["sr"]["sop_instance_uid"]) == ("sr", "auto-sr", _uid(CASE.report))


def test_other_srs_and_disabled_imports_make_no_job(world):
    w = world()
    w.arrive(with_sr_template(CASE.report, "1400"))
    assert w.jobs() == []
    off = world(auto_analysis=AutoAnalysis(import_sr=False))
    off.arrive(CASE.report)
    assert off.jobs() == []


def _planning(*rules: dict[str, Any]) -> dict[str, Any]:
    """The OrthancRT.AutoPlanning section as configured (Settings keep it raw; planning parses it)."""
    return {"Rules": list(rules), "Protocols": PROTOCOLS}


def test_a_structure_set_with_the_target_is_planned_once_per_matching_rule(world):
    w = world(auto_planning=_planning(PTV_RULE, {**PTV_RULE, "Name": "ptv-2", "Protocol": "two-beams"},
                                      {**PTV_RULE, "Name": "gtv", "TargetPattern": "GTV.*"}))
    w.arrive(*CASE.dvh.ct, CASE.dvh.rtstruct)
    plans = w.plans()
    assert sorted(p.source for p in plans) == ["rule:ptv", "rule:ptv-2"]
    assert {(p.target_roi, p.structure_set_sop_instance_uid, p.ct_series_instance_uid) for p in plans} == {
        ("PTV", _uid(CASE.dvh.rtstruct), str(CASE.dvh.ct[0].SeriesInstanceUID))}
    assert sorted(j.id for j in w.jobs("plan")) == sorted(p.job_id for p in plans)
    w.arrive(CASE.dvh.rtstruct)  # the same structure set again: the same plans
    assert len(w.plans()) == 2


def test_a_structure_set_without_the_target_is_not_planned(world):
    w = world(auto_planning=_planning(PTV_RULE))
    w.arrive(*CASE.dvh.ct, with_roi_renamed(CASE.dvh.rtstruct, "PTV", "CTV"))
    assert w.plans() == [] and w.jobs("plan") == []


def test_a_structure_set_before_its_ct_is_planned_when_the_ct_series_is_complete(world):
    w = world(auto_planning=_planning(PTV_RULE))
    w.arrive(CASE.dvh.rtstruct)
    assert w.plans() == []
    stored = w.arrive(*CASE.dvh.ct)
    w.events.on_change(STABLE_SERIES, stored[0]["ParentSeries"])
    assert [p.source for p in w.plans()] == ["rule:ptv"]


def test_unrelated_instances_and_series_make_nothing(world):
    w = world(auto_planning=_planning(PTV_RULE))
    stored = w.arrive(*CASE.dvh.ct[:3], instance_variant(CASE.dvh.ct[3], "unrelated"))
    w.events.on_change(STABLE_SERIES, stored[0]["ParentSeries"])
    w.events.on_change(NEW_INSTANCE, "00000000-00000000-00000000-00000000-00000000")  # deleted before we looked
    w.events.on_change("NEW_PATIENT", stored[0]["ParentStudy"])
    assert w.jobs() == [] and w.plans() == []


def test_the_change_table_names_every_rule():
    w_settings = dataclasses.replace(Settings(), auto_planning=_planning(PTV_RULE))
    table = trigger_table(Triggers(FakeOrthanc(), None, w_settings))  # type: ignore[arg-type]
    assert {change for change, _ in table} == {NEW_INSTANCE, STABLE_SERIES}
    names = {key: [t.__name__ for t in found] for key, found in table.items()}
    assert names[(NEW_INSTANCE, str(CASE.ion_plan.SOPClassUID))] == ["plan_arrived"]
    assert names[(NEW_INSTANCE, str(CASE.dvh.rtstruct.SOPClassUID))] == ["structure_set_arrived",
                                                                        "plan_structure_set"]
    assert (NEW_INSTANCE, str(CASE.dvh.ct[0].SOPClassUID)) not in table


def test_only_ct_and_structure_set_series_wake_waiting_jobs(world):
    w = world()
    dose, plan = w.arrive(on_other_frame(CASE.dvh.rtdose), instance_variant(CASE.ion_plan, "same-study"))
    [job] = w.jobs("analysis")
    assert job.state == jobs.WAITING  # for a structure set of its own frame
    for unrelated in (dose, plan):  # an RTDOSE and an RTPLAN series: nothing a job waits for
        w.events.on_change(STABLE_SERIES, unrelated["ParentSeries"])
        assert w.ctx.store.get(job.id).state == jobs.WAITING
    [ct] = w.arrive(CASE.dvh.ct[0])
    w.events.on_change(STABLE_SERIES, ct["ParentSeries"])
    assert w.ctx.store.get(job.id).state == jobs.QUEUED


def test_triggers_that_meet_a_database_outage_run_again_when_it_is_back(redis_url):
    """A real PostgreSQL server of the test's own, stopped while a plan and a structure set arrive."""
    server = PrivatePostgres()
    try:
        with psycopg.connect(server.url, autocommit=True) as admin:
            admin.execute("CREATE DATABASE rt")
        url = server.url.rsplit("/", 1)[0] + "/rt"
        db.upgrade(url)
        w = World(url, redis_url, Settings(database_url=url))
        server.stop()
        w.arrive(CASE.ion_plan, *CASE.dvh.ct, CASE.dvh.rtstruct, CASE.dvh.rtdose)  # no exception escapes
        # The plan's and the dose's (the structure set came before the dose: nothing to pair, no database).
        assert w.events.replay_missed() == 2  # still down: kept
        server.start()
        assert w.events.replay_missed() == 2
        assert len(w.jobs("dose")) == 1 and len(w.jobs("analysis")) == 1
        assert w.events.replay_missed() == 0  # nothing kept once they ran
        w.arrive(CASE.ion_plan)  # the same plan again: the same job
        assert len(w.jobs("dose")) == 1
    finally:
        db.engine_for.cache_clear()
        server.close()


def test_automatic_robustness_evaluates_ion_plans_whose_label_matches(world):
    label = str(CASE.ion_plan.RTPlanLabel)
    w = world(auto_robustness={"Enabled": True, "LabelPattern": f"^{label[:3]}", "Scenarios": {"random": 2}})
    w.arrive(CASE.ion_plan, CASE.photon_plan)
    [job] = w.jobs("robustness")
    assert (job.source, job.inputs["plan"]["sop_instance_uid"]) == ("auto", _uid(CASE.ion_plan))
    assert job.requested_by.startswith("auto-robustness") and len(job.params["scenario_list"]) == 3
    other = world(auto_robustness={"Enabled": True, "LabelPattern": "^NOT-THIS-PLAN"})
    other.arrive(CASE.ion_plan)
    assert other.jobs("robustness") == [] and [j.kind for j in other.jobs()] == ["dose"]
