"""The SR import job: the measurements of a TID 1500 report become rows with source "sr"."""
from __future__ import annotations

from typing import Any

from orthanc_rt.dicom.sr import read_measurement_report
from orthanc_rt.pacs.client import OrthancApi
from orthanc_rt.pacs.inputs import read_instance
from orthanc_rt.records.jobs import JobStore
from orthanc_rt.records.measurements import MeasurementStore
from orthanc_rt.records.tables import Job, Measurement
from orthanc_rt.settings import Settings
from worker.jobs import frame as job_frame


def run(job_id: str, settings: Settings, store: JobStore) -> dict[str, Any]:
    return job_frame.run(job_id, settings, store, compute)


def compute(job: Job, api: OrthancApi, settings: Settings, store: JobStore) -> dict[str, Any]:
    ds = read_instance(api, job.inputs["sr"]["orthanc_id"])
    fields, skipped = read_measurement_report(ds)
    rows = [Measurement(**f) for f in fields]
    MeasurementStore(settings.database_url).replace_sr_results(str(ds.SOPInstanceUID), rows)
    return {"measurements": len(rows), "skipped": skipped, "sr_instance_uid": str(ds.SOPInstanceUID)}
