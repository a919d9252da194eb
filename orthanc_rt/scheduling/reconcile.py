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

from orthanc_rt.pacs.client import OrthancApi
from orthanc_rt.pacs.resources import InstanceRef
from orthanc_rt.records import audit
from orthanc_rt.scheduling.origin import foreign_ion_plans
from orthanc_rt.scheduling.params import auto_dose_params
from orthanc_rt.scheduling.scheduler import Scheduler
from orthanc_rt.settings import AutoDose

log = logging.getLogger("orthanc_rt.scheduling.reconcile")


def reconcile(api: OrthancApi, scheduler: Scheduler, auto: AutoDose, *, actor: str,
              plans: list[InstanceRef] | None = None) -> dict[str, Any]:
    """Queue a dose job for every ion plan without one (`plans`: the foreign ion plans already found);
    returns what was found and queued."""
    params = auto_dose_params(auto)
    plans = foreign_ion_plans(api, scheduler.store) if plans is None else plans
    queued, existing = [], 0
    for plan in plans:
        job, created = scheduler.request_dose(plan, params, source="reconcile", requested_by=actor)
        if created:
            queued.append(job.id)
        else:
            existing += 1
    result = {"ion_plans": len(plans), "queued": queued, "already_had_job": existing}
    if queued:
        audit.record(scheduler.store.url, actor, audit.RECONCILE, "", None, result)
    log.info("Orthanc-RT reconcile by %s: %s", actor, result)
    return result
