"""The trigger rules: which arriving DICOM becomes which job.

- a new RTPLAN (ion or photon) becomes a dose job, unless an Orthanc-RT job
  made it (`orthanc_rt.scheduling.origin`); photon plans get a job too, which
  fails with a readable reason rather than being silently ignored;
- an RT Ion Plan of another system and an RTDOSE of another system that
  references it (ReferencedRTPlanSequence), both in Orthanc, in either
  order, become a dose check: the plan's recompute (its dose job) and a
  check job comparing it with that system's doses, once per plan and
  check parameters (`OrthancRT.DoseCheck`);
- a new RTDOSE wakes the checks of its study that wait (for their
  recompute, which is such a dose, or for the rest of a plan's BEAM doses);
- a new RTDOSE is paired with the RTSTRUCTs of its frame of reference (same
  study first, then same patient): one analysis job per pair, or one job
  waiting for a structure set when there is none; a dose of type ERROR (a
  check's difference or gamma map) has no DVH and is not analysed;
- a new RTSTRUCT is paired the same way with the RTDOSEs of its frame, and
  closes the waits of those doses;
- a new RTSTRUCT, or a CT series becoming complete, is checked against the
  automatic planning rules (`orthanc_rt.planning.auto_rules`): a rule whose
  target pattern matches an ROI plans the structure set once (the plan id
  is derived from structure set, rule and protocol);
- a new TID 1500 SR (OHIF's measurement report) becomes an import job;
- a CT or RTSTRUCT series becoming stable wakes the dose, analysis and plan
  jobs of its study that wait for input (what they wait for is one of those);
  other series (doses, plans, reports) wake nothing.

Each rule costs a few REST calls on Orthanc's index (tags, /tools/find); the
only file read is a structure set's, for its ROI names, when planning rules
are configured: the work is in the jobs. Plain Python over an OrthancApi and
the Scheduler: the plugin calls it from Orthanc's change thread, tests with
an in-memory Orthanc.
"""
from __future__ import annotations

import logging
from typing import Callable

from orthanc_rt.dicom import sop
from orthanc_rt.dicom.sr import SR_CLASSES
from orthanc_rt.errors import PlanRequestError
from orthanc_rt.pacs.client import OrthancApi, get_json
from orthanc_rt.pacs.resources import (
    InstanceRef,
    Uploader,
    find_instance,
    find_instances,
    frame_of_reference_of,
    instance_ref,
    instance_tag,
    referenced_plan_uid,
    sop_class_of,
    stored_by,
)
from orthanc_rt.planning.auto_rules import AutoPlanning
from orthanc_rt.records import audit, jobs
from orthanc_rt.records.checks import CheckStore
from orthanc_rt.records.tables import Job
from orthanc_rt.scheduling.origin import foreign_doses_of, foreign_ion_plans, made_by_job
from orthanc_rt.scheduling.params import (
    PRIMARIES_RANGE,
    AnalysisParams,
    AutoComputeFrom,
    CheckConfig,
    DoseParams,
    auto_dose_params,
)
from orthanc_rt.scheduling.robustness import AutoRobustness
from orthanc_rt.scheduling.scheduler import Scheduler
from orthanc_rt.scheduling.submission import PlanSubmitter
from orthanc_rt.settings import Settings

log = logging.getLogger("orthanc_rt.plugin")

Trigger = Callable[[str], None]  # called with the Orthanc id of the instance or series

_PATIENT_ID = "0010,0020"
_DOSE_TYPE = "3004,0004"
_RT_PLAN_LABEL = "300a,0002"
_SR_TEMPLATE = "0040,a504/0/0040,db00"  # ContentTemplateSequence / TemplateIdentifier
# What waiting jobs wait for (orthanc_rt.pacs.inputs, worker.jobs.analysis): a CT, or a structure set.
_AWAITED_MODALITIES = ("CT", "RTSTRUCT")


class Triggers:
    def __init__(self, orthanc: OrthancApi, scheduler: Scheduler, settings: Settings,
                 planner: PlanSubmitter | None = None, check_config: CheckConfig | None = None,
                 compute_from: AutoComputeFrom | None = None):
        self.orthanc = orthanc
        self.scheduler = scheduler
        self.settings = settings
        # Parsed once: the settings are frozen, and the rules are consulted on every structure set and CT series.
        self.auto_planning = AutoPlanning.of(settings)
        self.planner = planner
        self.check_config = check_config if check_config is not None else CheckConfig.of(settings)
        self.compute_from = compute_from if compute_from is not None else AutoComputeFrom.of(settings)
        self.auto_robustness = AutoRobustness.of(settings, primaries_range=PRIMARIES_RANGE)
        if self.auto_robustness.problem:
            log.warning("Orthanc-RT: %s; no automatic robustness evaluation", self.auto_robustness.problem)

    def for_new_instance(self) -> dict[str, list[Trigger]]:
        """The triggers of an arriving instance, by SOP class, in the order they run."""
        table: dict[str, list[Trigger]] = {
            sop.RT_ION_PLAN: [self.plan_arrived],
            sop.RT_PLAN: [self.plan_arrived],
            sop.RT_STRUCTURE_SET: [self.structure_set_arrived, self.plan_structure_set],
            sop.RT_DOSE: [self.dose_arrived],
        }
        table.update({sop_class: [self.sr_arrived] for sop_class in SR_CLASSES})
        return table

    def plan_arrived(self, instance_id: str) -> None:
        self._dose_and_check(instance_id)
        self._robustness(instance_id)

    def _robustness(self, instance_id: str) -> None:
        """OrthancRT.AutoRobustness: evaluate an arriving RT Ion Plan whose label matches the rule."""
        rule = self.auto_robustness
        if not rule.enabled or rule.params is None or sop_class_of(self.orthanc, instance_id) != sop.RT_ION_PLAN:
            return
        label = instance_tag(self.orthanc, instance_id, _RT_PLAN_LABEL) or ""
        if not rule.matches(label) or made_by_job(self.orthanc, self.scheduler.store, instance_id):
            return
        who = self.may_compute(instance_id, "auto-robustness")
        if who is None:
            return
        plan = instance_ref(self.orthanc, instance_id)
        job, created = self.scheduler.request_robustness(
            plan, rule.params, source="auto", requested_by=_caused_by("auto-robustness", who),
            wait_for_ct_seconds=self.settings.auto_dose.wait_for_ct_seconds)
        log.info("Orthanc-RT: plan %s (%s) -> robustness job %s (%s)", plan.sop_instance_uid, label, job.id,
                 "new" if created else "existing")

    def _dose_and_check(self, instance_id: str) -> None:
        auto = self.settings.auto_dose
        checking = self.check_config.enabled
        if not (auto.enabled or checking):
            return
        plan = instance_ref(self.orthanc, instance_id)
        maker = made_by_job(self.orthanc, self.scheduler.store, instance_id)
        if maker:
            log.info("Orthanc-RT: plan %s was made by job %s; no dose job", plan.sop_instance_uid, maker)
            return
        # Without the automatic dose, only a check would compute: ask the uploader's permission (and audit a
        # refusal) only when there is another system's dose to check.
        to_check = checking and self._has_foreign_dose(plan)
        if not (auto.enabled or to_check):
            return
        who = self.may_compute(instance_id, "auto-dose" if auto.enabled else "auto-check")
        if who is None:
            return
        if auto.enabled:
            job, created = self.scheduler.request_dose(plan, self.recompute_params(), source="auto",
                                                       requested_by=_caused_by("auto-dose", who))
            log.info("Orthanc-RT: plan %s -> job %s (%s)", plan.sop_instance_uid, job.id,
                     "new" if created else "existing")
        if to_check:
            self._check(plan, caused_by=_caused_by("auto-check", who))

    def dose_arrived(self, instance_id: str) -> None:
        self._dose_for_checks(instance_id)
        if not self.settings.auto_analysis.enabled:
            return
        if instance_tag(self.orthanc, instance_id, _DOSE_TYPE) == "ERROR":
            log.info("Orthanc-RT: RTDOSE %s is a difference or gamma map (DoseType ERROR): no DVH analysis",
                     instance_id)
            return
        arrived = self._with_frame(instance_id, "RTDOSE")
        if arrived is None:
            return
        dose, frame = arrived
        for structure_set in self.same_frame(dose, "RTSTRUCT", frame) or [None]:
            job = self._analyse(dose, structure_set, frame)
            log.info("Orthanc-RT: RTDOSE %s -> analysis job %s (%s)", dose.sop_instance_uid, job.id, job.state)

    def recompute_params(self, primaries: int | None = None) -> DoseParams:
        """The automatic dose's parameters (a check's own primaries, when it sets them)."""
        return auto_dose_params(self.settings.auto_dose, primaries)

    def _dose_for_checks(self, instance_id: str) -> None:
        """A dose wakes waiting checks (ours: a recompute; another system's: a BEAM dose of a set), and
        another system's dose of a stored RT Ion Plan of another system asks for that plan's check."""
        if not self.check_config.enabled:
            return
        dose = instance_ref(self.orthanc, instance_id)
        resumed = self.scheduler.resume_waiting(dose.orthanc_study_id, "check")
        if resumed:
            log.info("Orthanc-RT: RTDOSE %s woke checks %s", dose.sop_instance_uid, resumed)
        if made_by_job(self.orthanc, self.scheduler.store, instance_id):
            return
        plan_uid = referenced_plan_uid(self.orthanc, instance_id)
        plan_id = find_instance(self.orthanc, plan_uid) if plan_uid else None
        if plan_id is None:
            log.info("Orthanc-RT: RTDOSE %s references plan %s, which is not in Orthanc (yet): no check",
                     dose.sop_instance_uid, plan_uid or "(none)")
            return
        plan = instance_ref(self.orthanc, plan_id)
        if plan.sop_class_uid != sop.RT_ION_PLAN:
            log.info("Orthanc-RT: RTDOSE %s is of a %s: only ion plans are recomputed", dose.sop_instance_uid,
                     sop.describe(plan.sop_class_uid))
            return
        if not made_by_job(self.orthanc, self.scheduler.store, plan_id):
            who = self.may_compute(instance_id, "auto-check")
            if who is not None:
                self._check(plan, dose.sop_instance_uid, caused_by=_caused_by("auto-check", who))

    def check_stored_plans(self, plans: list[InstanceRef] | None = None) -> list[str]:
        """The checks of RT Ion Plans stored with another system's doses while Orthanc-RT was not running
        (idempotent: a plan's check is found, not made again; `plans`: the foreign ion plans already found);
        returns the check ids."""
        if not self.check_config.enabled:
            return []
        plans = foreign_ion_plans(self.orthanc, self.scheduler.store) if plans is None else plans
        return [self._check(plan).id for plan in plans if self._has_foreign_dose(plan)]

    def _has_foreign_dose(self, plan: InstanceRef) -> bool:
        """An ion plan with another system's dose in its study: what a check compares."""
        return plan.sop_class_uid == sop.RT_ION_PLAN and bool(
            foreign_doses_of(self.orthanc, self.scheduler.store, plan.study_instance_uid, plan.sop_instance_uid))

    def computable(self, plans: list[InstanceRef]) -> list[InstanceRef]:
        """The plans whose uploader may start Monte Carlo (start-up: the refusals were audited on arrival)."""
        return [plan for plan in plans if self.compute_from.allows(stored_by(self.orthanc, plan.orthanc_id))]

    def may_compute(self, instance_id: str, rule: str) -> Uploader | None:
        """Who stored the instance, when OrthancRT.AutoComputeFrom lets their uploads start Monte Carlo; None
        (logged and audited) when it does not."""
        who = stored_by(self.orthanc, instance_id)
        if self.compute_from.allows(who):
            return who
        reason = self.compute_from.problem or "OrthancRT.AutoComputeFrom does not list this source"
        log.warning("Orthanc-RT: %s of %s refused: %s (%s); it can be requested", rule, instance_id, who, reason)
        audit.record(self.scheduler.store.url, str(who)[:128], audit.AUTO_COMPUTE_REFUSED, instance_id, None,
                     {"rule": rule, "uploader": str(who), "reason": reason})
        return None

    def _check(self, plan: InstanceRef, dose_uid: str | None = None, caused_by: str = "auto-check") -> Job:
        """The plan's check (one per plan and parameters). A finished check runs again when a dose of the plan
        arrives that it did not compare (a new export of the dose); the same dose sent again changes nothing."""
        config = self.check_config
        job, created = self.scheduler.request_check(
            plan, config.defaults, self.recompute_params(config.defaults.primaries), source="auto",
            requested_by=caused_by, wait_seconds=config.wait_seconds)
        if not created and dose_uid and job.state in jobs.FINAL_STATES:
            record = CheckStore(self.scheduler.store.url).get(job.id)
            if record is None or dose_uid not in record.reference_sop_instance_uids.get("uids", []):
                job = self.scheduler.rerun(job, actor=caused_by,
                                           message=f"RTDOSE {dose_uid} of the plan arrived: checking again")
        log.info("Orthanc-RT: plan %s with another system's dose -> check %s (%s, %s)", plan.sop_instance_uid,
                 job.id, "new" if created else "existing", job.state)
        return job

    def structure_set_arrived(self, instance_id: str) -> None:
        if not self.settings.auto_analysis.enabled:
            return
        arrived = self._with_frame(instance_id, "RTSTRUCT")
        if arrived is None:
            return
        structure_set, frame = arrived
        for dose in self.same_frame(structure_set, "RTDOSE", frame):
            if instance_tag(self.orthanc, dose.orthanc_id, _DOSE_TYPE) == "ERROR":
                continue  # a check's difference or gamma map: no DVH
            job = self._analyse(dose, structure_set, frame)
            self.scheduler.close_waiting_analysis(dose.sop_instance_uid, [job.id])
            log.info("Orthanc-RT: RTSTRUCT %s + RTDOSE %s -> analysis job %s", structure_set.sop_instance_uid,
                     dose.sop_instance_uid, job.id)

    def sr_arrived(self, instance_id: str) -> None:
        auto = self.settings.auto_analysis
        if not (auto.enabled and auto.import_sr) or instance_tag(self.orthanc, instance_id, _SR_TEMPLATE) != "1500":
            return  # not wanted, or an SR but not a measurement report
        sr = instance_ref(self.orthanc, instance_id)
        job, _ = self.scheduler.request_sr_import(sr, source="auto", requested_by="auto-sr")
        log.info("Orthanc-RT: measurement report %s -> job %s", sr.sop_instance_uid, job.id)

    def plan_structure_set(self, instance_id: str) -> None:
        """Apply the automatic planning rules to a structure set (idempotent: one plan per set and rule)."""
        rules = self.auto_planning.active_rules()
        if not rules or self.planner is None or self.may_compute(instance_id, "auto-planning") is None:
            return
        index = self.planner.index
        summary = index.summary(instance_id)
        if summary.problem:
            log.warning("Orthanc-RT: structure set %s not planned: %s", summary.sop_instance_uid, summary.problem)
            return
        contoured = [roi.name for roi in summary.rois if roi.contours]
        study_id = get_json(self.orthanc, f"/instances/{instance_id}/study")["ID"]
        ct = None
        for rule in rules:
            target = rule.target_in(contoured)
            if target is None:
                continue
            ct = ct or index.planning_ct(study_id, summary)  # looked up once, for the first matching rule
            if ct is None:  # planned when its CT series is complete (series_stable)
                log.info("Orthanc-RT: rule %s matches %s in %s; waiting for its CT", rule.name, target,
                         summary.sop_instance_uid)
                continue
            try:
                request = self.auto_planning.request_for(rule, target)
                done = self.planner.record(rule.workflow, request, summary, ct_series=ct, source=f"rule:{rule.name}",
                                           requested_by="auto-planning", rule=rule.name)
            except PlanRequestError as exc:
                log.warning("Orthanc-RT: rule %s cannot plan %s: %s", rule.name, summary.sop_instance_uid, exc)
                continue
            log.info("Orthanc-RT: rule %s, target %s of %s -> plan %s (%s)", rule.name, target,
                     summary.sop_instance_uid, done.plan.id, "new" if done.created else "existing")

    def series_stable(self, series_id: str) -> None:
        series = get_json(self.orthanc, f"/series/{series_id}")
        modality = series["MainDicomTags"].get("Modality")
        resumed = [job for kind in ("dose", "analysis", "plan", "robustness")
                   for job in self.scheduler.resume_waiting(series["ParentStudy"], kind)] \
            if modality in _AWAITED_MODALITIES else []
        if resumed:
            log.info("Orthanc-RT: series %s complete, resumed jobs %s", series_id, resumed)
        if modality == "CT" and self.auto_planning.active_rules() \
                and self.planner is not None:
            for summary in self.planner.index.of_study(series["ParentStudy"]):
                self.plan_structure_set(summary.orthanc_id)

    def same_frame(self, ref: InstanceRef, modality: str, frame: str) -> list[InstanceRef]:
        """Instances of `modality` on `frame`: in the same study, else in the patient's other studies."""
        found = self._on_frame(find_instances(self.orthanc, modality, StudyInstanceUID=ref.study_instance_uid),
                               modality, frame)
        if not found:
            patient = instance_tag(self.orthanc, ref.orthanc_id, _PATIENT_ID)
            if patient:
                found = self._on_frame(find_instances(self.orthanc, modality, PatientID=patient), modality, frame)
        return [instance_ref(self.orthanc, i) for i in found if i != ref.orthanc_id]

    def _on_frame(self, ids: list[str], modality: str, frame: str) -> list[str]:
        return [i for i in ids if frame_of_reference_of(self.orthanc, i, modality) == frame]

    def _with_frame(self, instance_id: str, modality: str) -> tuple[InstanceRef, str] | None:
        ref = instance_ref(self.orthanc, instance_id)
        frame = frame_of_reference_of(self.orthanc, instance_id, modality)
        if not frame:
            log.warning("Orthanc-RT: %s %s names no frame of reference; not analysed", modality, ref.sop_instance_uid)
            return None
        return ref, frame

    def _analyse(self, dose: InstanceRef, structure_set: InstanceRef | None, frame: str) -> Job:
        params = AnalysisParams.from_settings(self.settings.auto_analysis)
        job, _ = self.scheduler.request_analysis(dose, structure_set, params, frame_of_reference_uid=frame,
                                                 source="auto", requested_by="auto-analysis")
        return job


def _caused_by(rule: str, who: Uploader) -> str:
    """A job's requested_by: the rule, and who stored the instance that set it off (the audit names both)."""
    return f"{rule}; {who}"[:128] if str(who) else rule
