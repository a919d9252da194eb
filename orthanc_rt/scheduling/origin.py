"""Which DICOM objects Orthanc-RT's jobs made: recognised by what made them, not by what they hold.

Every result a job stores has a UID derived from the job's id and the
result's name (`worker.jobs.*`: derive_uid("orthanc-rt", job id, name)), so
an object is ours when its UID is one of those of a job that ran on its
study. The Manufacturer tag narrows the search first: the builders write
"Orthanc-RT" on everything, and other systems' exports never carry it, so a
TPS export costs one tag read. A plan's referenced dose, which earlier
versions took as the mark of our plans, says nothing: every TPS exports its
plan with its dose.
"""
from __future__ import annotations

from orthanc_rt.dicom import sop
from orthanc_rt.dicom.uids import MANUFACTURER, derive_uid
from orthanc_rt.errors import OrthancError
from orthanc_rt.pacs.client import OrthancApi
from orthanc_rt.pacs.resources import (
    InstanceRef,
    find_instances,
    instance_ref,
    instance_tag,
    referenced_plan_uid,
    sop_class_of,
)
from orthanc_rt.records.jobs import JobStore

# The kinds that store DICOM, and the names their results' UIDs derive from.
MAKERS = ("dose", "plan", "check", "robustness")
# The LETd Parametric Map and the RBE-weighted RTDOSE of a dose job with LET (worker.jobs.let_results).
LET_MAP_RESULT, EFFECTIVE_DOSE_RESULT = "letmap", "rtdose-effective"
# The voxel-wise minimum and maximum dose over a robustness evaluation's scenarios (worker.jobs.robustness).
MIN_DOSE_RESULT, MAX_DOSE_RESULT = "rtdose-min", "rtdose-max"
RESULT_NAMES = ("rtdose", "rtplan", "difference", "gamma", "report", LET_MAP_RESULT, EFFECTIVE_DOSE_RESULT,
                MIN_DOSE_RESULT, MAX_DOSE_RESULT)
_MANUFACTURER, _SOP_INSTANCE_UID, _STUDY_INSTANCE_UID = "0008,0070", "0008,0018", "0020,000d"


def made_by_job(api: OrthancApi, store: JobStore, instance_id: str) -> str | None:
    """The id of the Orthanc-RT job that made this instance, None when another system (or a person) did."""
    if (instance_tag(api, instance_id, _MANUFACTURER) or "").strip() != MANUFACTURER:
        return None
    sop_uid = instance_tag(api, instance_id, _SOP_INSTANCE_UID)
    study_uid = instance_tag(api, instance_id, _STUDY_INSTANCE_UID)
    if not sop_uid or not study_uid:
        return None
    for job_id in store.ids_of_study(study_uid, MAKERS):
        if sop_uid in {derive_uid("orthanc-rt", job_id, name) for name in RESULT_NAMES}:
            return job_id
    return None


def foreign_doses_of(api: OrthancApi, store: JobStore, study_uid: str, plan_uid: str) -> list[str]:
    """Orthanc ids of the RTDOSEs in the study that reference the plan and no Orthanc-RT job made: the doses
    of the system that made the plan, which a check compares with."""
    return [dose_id for dose_id in find_instances(api, "RTDOSE", StudyInstanceUID=study_uid)
            if referenced_plan_uid(api, dose_id) == plan_uid and not made_by_job(api, store, dose_id)]


def foreign_ion_plans(api: OrthancApi, store: JobStore) -> list[InstanceRef]:
    """Every RT Ion Plan in Orthanc that no Orthanc-RT job made (one deleted while we look is left out)."""
    plans = []
    for plan_id in find_instances(api, "RTPLAN"):
        try:
            if sop_class_of(api, plan_id) == sop.RT_ION_PLAN and not made_by_job(api, store, plan_id):
                plans.append(instance_ref(api, plan_id))
        except OrthancError as exc:
            if exc.status != 404:
                raise
    return plans
