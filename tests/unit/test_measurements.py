"""Measurement records against real SQLite and PostgreSQL: replace-by-job, queries, summary, exports,
manual validation; analysis scheduling against a real Redis."""
from __future__ import annotations

import csv
import io

import pytest
from rq import Queue

from orthanc_rt.analysis.dose_analysis import analyse
from orthanc_rt.errors import ValidationError
from orthanc_rt.pacs.resources import InstanceRef
from orthanc_rt.records import jobs
from orthanc_rt.records.jobs import JobStore
from orthanc_rt.records.manual_measurements import manual_fields
from orthanc_rt.records.measurements import (
    COLUMNS,
    MeasurementQuery,
    MeasurementStore,
    curve_dict,
    to_csv,
)
from orthanc_rt.records.tables import Measurement
from orthanc_rt.scheduling.params import AnalysisParams
from orthanc_rt.scheduling.queue import QUEUE_NAMES, Dispatcher, redis_for
from orthanc_rt.scheduling.scheduler import Scheduler
from tests.support.cases import dvh_case

STUDY = "1.2.826.0.1.3680043.9.1"


@pytest.fixture(scope="module")
def result():
    case = dvh_case("store")
    return case, lambda job: analyse(case.rtdose, case.rtstruct, case.ct, AnalysisParams(), job_id=job)


def test_rerun_replaces_rows_and_curves(database_url, result):
    case, run = result
    store = MeasurementStore(database_url)
    first = run("analysis-1")
    store.replace_job_results("analysis-1", first.measurements, first.curves)
    again = run("analysis-1")
    store.replace_job_results("analysis-1", again.measurements, again.curves)
    rows, total = store.query(MeasurementQuery(job="analysis-1", limit=500))
    assert total == len(first.measurements) and len(rows) == total
    assert len(store.curves(str(case.rtdose.SOPInstanceUID))) == 5


def test_queries_filter_sort_and_page(database_url, result):
    case, run = result
    store = MeasurementStore(database_url)
    analysed = run("analysis-2")
    store.replace_job_results("analysis-2", analysed.measurements, analysed.curves)
    dose = str(case.rtdose.SOPInstanceUID)
    rows, total = store.query(MeasurementQuery(dose=dose, metric="Dmean", limit=500))
    assert total == 5 and {r.roi_name for r in rows} == set(case.roi_names)
    rows, _ = store.query(MeasurementQuery(roi="PTV", type="hounsfield", source="image"))
    assert sorted(r.metric for r in rows) == ["HUmax", "HUmean", "HUmin", "HUstd"]
    assert store.query(MeasurementQuery(roi="2", metric="volume"))[0][0].roi_name == "PTV"
    page, total = store.query(MeasurementQuery(dose=dose, sort="-value", limit=7, offset=3))
    everything, _ = store.query(MeasurementQuery(dose=dose, sort="-value", limit=500))
    assert [r.id for r in page] == [r.id for r in everything[3:10]]
    summary = store.summary(case.study.study_instance_uid)
    ptv = next(line for line in summary if line["roi_name"] == "PTV")
    assert {"Dmean", "D95", "V20Gy", "HUmean", "volume"} <= set(ptv["metrics"]) and ptv["units"]["volume"] == "cc"
    curve = curve_dict(store.curves(dose)[0])
    assert curve["dose_gy"][1] == pytest.approx(curve["bin_width_gy"])
    table = list(csv.reader(io.StringIO(to_csv(page).decode())))
    assert tuple(table[0]) == COLUMNS and len(table) == 8


def test_manual_rows_round_trip(database_url):
    store = MeasurementStore(database_url)
    fields = manual_fields({"type": "angle", "value": 30, "study_instance_uid": STUDY, "unit": "°"})
    row = store.add(Measurement(source="manual", created_by="me", **fields))
    assert (row.unit, row.metric, row.value) == ("deg", "angle", 30.0)
    updated = store.update(row.id, manual_fields({"value": 31}, existing={"type": "angle", "value": 30,
                                                                          "study_instance_uid": STUDY}))
    assert updated.value == 31.0 and updated.updated_at >= row.updated_at
    stored = {"type": "angle", "value": 31.0, "unit": "deg", "metric": "angle", "study_instance_uid": STUDY}
    retyped = manual_fields({"type": "distance", "value": 4}, existing=stored)
    assert (retyped["unit"], retyped["metric"]) == ("mm", "distance")
    assert store.delete(row.id) and store.get(row.id) is None and not store.delete(row.id)


@pytest.mark.parametrize("body,field", [
    ({"value": 1, "study_instance_uid": STUDY}, "type"),
    ({"type": "distance", "study_instance_uid": STUDY}, "value"),
    ({"type": "distance", "value": True, "study_instance_uid": STUDY}, "value"),
    ({"type": "distance", "value": -1, "study_instance_uid": STUDY}, "value"),
    ({"type": "area", "value": 1, "unit": "mm", "study_instance_uid": STUDY}, "unit"),
    ({"type": "area", "value": 1}, "study_instance_uid"),
    ({"type": "area", "value": 1, "study_instance_uid": STUDY, "sop_instance_uid": "1.2"}, "series_instance_uid"),
    ({"type": "area", "value": 1, "study_instance_uid": STUDY, "frame_number": 2}, "sop_instance_uid"),
    ({"type": "area", "value": 1, "study_instance_uid": STUDY, "label": 5}, "label"),
    ({"type": "area", "value": 1, "study_instance_uid": STUDY, "details": []}, "details"),
    ({"type": "area", "value": 1, "study_instance_uid": STUDY, "details": {"x": float("inf")}}, "details"),
])
def test_manual_bodies_are_validated_by_field(body, field):
    with pytest.raises(ValidationError) as info:
        manual_fields(body)
    assert info.value.field == field


DOSE = InstanceRef(orthanc_id="d-1", sop_instance_uid="1.2.3.9", sop_class_uid="1.2.840.10008.5.1.4.1.1.481.2",
                   series_instance_uid="1.2.3.8", study_instance_uid="1.2", orthanc_study_id="s-1")
STRUCTS = InstanceRef(orthanc_id="r-1", sop_instance_uid="1.2.3.7", sop_class_uid="1.2.840.10008.5.1.4.1.1.481.3",
                      series_instance_uid="1.2.3.6", study_instance_uid="1.2", orthanc_study_id="s-1")


def test_analysis_jobs_wait_pair_and_rerun(database_url, redis_url):
    store = JobStore(database_url)
    scheduler = Scheduler(store, Dispatcher(redis_url, job_timeout_s=60))
    queue = Queue(QUEUE_NAMES["analysis"], connection=redis_for(redis_url))
    waiting, _ = scheduler.request_analysis(DOSE, None, AnalysisParams(), frame_of_reference_uid="1.9",
                                            source="auto")
    assert waiting.state == jobs.WAITING and queue.job_ids == []
    assert scheduler.resume_waiting("s-1") == []  # a stable series wakes dose jobs, not this wait
    pair, created = scheduler.request_analysis(DOSE, STRUCTS, AnalysisParams(), frame_of_reference_uid="1.9",
                                               source="auto")
    assert created and queue.job_ids == [pair.id] and pair.id != waiting.id
    assert scheduler.close_waiting_analysis(DOSE.sop_instance_uid, [pair.id]) == [waiting.id]
    closed = store.get(waiting.id)
    assert closed.outputs == {"analysed_by": [pair.id]} and closed.progress == 1.0  # done, not "succeeded 0 %"
    assert pair.id in closed.message
    # The same pair again while it is queued: nothing new. Once finished: the same job runs again.
    assert scheduler.request_analysis(DOSE, STRUCTS, AnalysisParams(), frame_of_reference_uid="1.9",
                                      source="auto")[1] is False
    store.transition(pair.id, jobs.SUCCEEDED)
    queue.empty()
    again, created = scheduler.request_analysis(DOSE, STRUCTS, AnalysisParams(), frame_of_reference_uid="1.9",
                                                source="auto")
    assert not created and again.id == pair.id and again.state == jobs.QUEUED and queue.job_ids == [pair.id]
    other = scheduler.request_analysis(DOSE, STRUCTS, AnalysisParams(v_at_dose_gy=(30.0,)),
                                       frame_of_reference_uid="1.9", source="api")[0]
    assert other.id != pair.id  # other settings, other job
