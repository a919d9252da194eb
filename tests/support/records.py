"""Rows for tests of the records (orthanc_rt.records)."""
from __future__ import annotations

from orthanc_rt.records import jobs
from orthanc_rt.records.tables import Job


def jobs_row(job_id: str, study: str = "1.2") -> Job:
    """A queued dose job as the scheduler creates one, with nothing computed yet."""
    return Job(id=job_id, kind="dose", state=jobs.QUEUED, stage="queued", progress=0.0, message="",
               source="api", requested_by="", study_instance_uid=study, orthanc_study_id="s", params={},
               inputs={}, outputs={}, attempts=0)
