"""Reconcile: find RT Ion Plans already in Orthanc that have no dose job and queue them, once.

Plans an Orthanc-RT job made (its optimised plans; `origin`) are left alone.

For plans stored while Orthanc-RT was not running (downtime, plugin installed
on an existing PACS). Jobs are requested exactly as the automatic trigger
would have (same parameters, hence the same deterministic job id), so running
reconcile twice, or after the trigger already fired, creates nothing new.
"""
from __future__ import annotations

import logging
from typing import Any

from orthanc_rt.dicom import sop
from orthanc_rt.errors import OrthancError
from orthanc_rt.pacs.client import OrthancApi, get_json, post_json
from orthanc_rt.pacs.resources import instance_ref, sop_class_of
from orthanc_rt.records import audit
from orthanc_rt.scheduling.origin import made_by_job
from orthanc_rt.scheduling.params import DoseParams
from orthanc_rt.scheduling.scheduler import Scheduler
from orthanc_rt.settings import AutoDose

log = logging.getLogger("orthanc_rt.scheduling.reconcile")


def reconcile(api: OrthancApi, scheduler: Scheduler, auto: AutoDose, *, actor: str) -> dict[str, Any]:
    """Queue a dose job for every ion plan without one; returns what was found and queued."""
    params = DoseParams(primaries=auto.primaries, scoring_spacing_mm=auto.scoring_spacing_mm,
                        wait_for_ct_seconds=auto.wait_for_ct_seconds)
    plans, queued, existing = 0, [], 0
    for series_id in post_json(api, "/tools/find", {"Level": "Series", "Query": {"Modality": "RTPLAN"}}):
        try:
            instances = get_json(api, f"/series/{series_id}").get("Instances", [])
            for instance_id in instances:
                if sop_class_of(api, instance_id) != sop.RT_ION_PLAN \
                        or made_by_job(api, scheduler.store, instance_id):
                    continue
                plans += 1
                job, created = scheduler.request_dose(instance_ref(api, instance_id), params, source="reconcile",
                                                      requested_by=actor)
                if created:
                    queued.append(job.id)
                else:
                    existing += 1
        except OrthancError as exc:
            if exc.status != 404:  # deleted while we looked: skip it
                raise
    result = {"ion_plans": plans, "queued": queued, "already_had_job": existing}
    if queued:
        audit.record(scheduler.store.url, actor, audit.RECONCILE, "", None, result)
    log.info("Orthanc-RT reconcile by %s: %s", actor, result)
    return result
