"""Reactions to DICOM arriving in Orthanc (run on Orthanc's change thread, off the storage path).

A new RTPLAN becomes a dose job (recorded in the database first, then
enqueued); a series becoming stable wakes the jobs of its study that wait
for input. The storage path itself is never touched: Orthanc reports new
instances through its change feed.
"""
from __future__ import annotations

import logging

from orthanc_rt.dicom import sop
from orthanc_rt.orthanc_api import OrthancApi, OrthancError, get_json
from orthanc_rt.params import DoseParams
from orthanc_rt.resources import instance_ref, sop_class_of
from orthanc_rt.scheduling import Scheduler
from orthanc_rt.settings import Settings

log = logging.getLogger("orthanc_rt.plugin")

# Plans the automatic trigger acts on. Photon plans get a job too: it fails
# with a readable reason rather than being silently ignored.
_PLAN_CLASSES = (sop.RT_ION_PLAN, sop.RT_PLAN)


class ArrivalHandler:
    def __init__(self, orthanc: OrthancApi, scheduler: Scheduler, settings: Settings):
        self.orthanc = orthanc
        self.scheduler = scheduler
        self.settings = settings

    def on_change(self, change: str, resource_id: str) -> None:
        """Entry point for Orthanc's change events (names as in orthanc.ChangeType)."""
        try:
            if change == "NEW_INSTANCE":
                self.instance_arrived(resource_id)
            elif change == "STABLE_SERIES":
                self.series_stable(resource_id)
        except OrthancError as exc:
            if exc.status == 404:  # deleted before we looked: nothing to do
                return
            log.exception("Orthanc-RT could not handle %s %s", change, resource_id)
        except Exception:  # never let an event take the change thread down
            log.exception("Orthanc-RT could not handle %s %s", change, resource_id)

    def instance_arrived(self, instance_id: str) -> None:
        auto = self.settings.auto_dose
        if not auto.enabled:
            return
        if sop_class_of(self.orthanc, instance_id) not in _PLAN_CLASSES:
            return
        plan = instance_ref(self.orthanc, instance_id)
        params = DoseParams(primaries=auto.primaries, scoring_spacing_mm=auto.scoring_spacing_mm,
                            wait_for_ct_seconds=auto.wait_for_ct_seconds)
        job, created = self.scheduler.request_dose(plan, params, source="auto", requested_by="auto-dose")
        log.info("Orthanc-RT: plan %s -> job %s (%s)", plan.sop_instance_uid, job.id,
                 "new" if created else "existing")

    def series_stable(self, series_id: str) -> None:
        series = get_json(self.orthanc, f"/series/{series_id}")
        resumed = self.scheduler.resume_waiting(series["ParentStudy"])
        if resumed:
            log.info("Orthanc-RT: series %s complete, resumed jobs %s", series_id, resumed)
