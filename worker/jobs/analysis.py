"""The analysis job: DVH metrics, curves and CT statistics of one RTDOSE with one RTSTRUCT."""
from __future__ import annotations

import time
from typing import Any

from orthanc_rt.analysis.dose_analysis import analyse
from orthanc_rt.dicom.rtstruct import referenced_ct_series
from orthanc_rt.errors import InputNotReady
from orthanc_rt.pacs.client import OrthancApi, post_json
from orthanc_rt.pacs.inputs import complete_series, fetch_series, read_instance
from orthanc_rt.records.jobs import JobStore
from orthanc_rt.records.measurements import MeasurementStore
from orthanc_rt.records.tables import Job
from orthanc_rt.scheduling.params import AnalysisParams
from orthanc_rt.settings import Settings
from worker.jobs import frame as job_frame


def run(job_id: str, settings: Settings, store: JobStore) -> dict[str, Any]:
    return job_frame.run(job_id, settings, store, compute)


def compute(job: Job, api: OrthancApi, settings: Settings, store: JobStore) -> dict[str, Any]:
    if "structure_set" not in job.inputs:
        raise InputNotReady(job.message or "waiting for a structure set")
    started = time.perf_counter()
    store.progress(job.id, stage="fetching inputs", fraction=0.05, eta_seconds=None)
    dose_ds = read_instance(api, job.inputs["dose"]["orthanc_id"])
    struct_ds = read_instance(api, job.inputs["structure_set"]["orthanc_id"])
    ct_datasets, ct_note = _ct_of(api, struct_ds)
    store.progress(job.id, stage="computing DVH", fraction=0.5, eta_seconds=None)
    result = analyse(dose_ds, struct_ds, ct_datasets, AnalysisParams.from_dict(job.params), job_id=job.id)
    if ct_note:
        result.notes.append(ct_note)
    MeasurementStore(settings.database_url).replace_job_results(job.id, result.measurements, result.curves)
    return {**result.summary(), "seconds": round(time.perf_counter() - started, 3),
            "dose_sop_instance_uid": str(dose_ds.SOPInstanceUID),
            "structure_set_sop_instance_uid": str(struct_ds.SOPInstanceUID)}


def _ct_of(api: OrthancApi, struct_ds: Any) -> tuple[list | None, str]:
    """The CT series the structure set references; without it in Orthanc, the analysis goes on without HU."""
    series_uid = referenced_ct_series(struct_ds)
    if not series_uid:
        return None, "the structure set names no CT series: HU left out"
    found = post_json(api, "/tools/find", {"Level": "Series", "Query": {"SeriesInstanceUID": series_uid}})
    if not found:
        return None, f"CT series {series_uid} is not in Orthanc: HU left out"
    return fetch_series(api, complete_series(api, found[0])), ""
