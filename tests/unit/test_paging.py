"""Paged lists (orthanc_rt.records.db.paged) on SQLite and PostgreSQL: stable order with ties broken by the id in the
sort's direction, the same rows whether a page is read directly or through its index (deep offsets), and the
total on every page, past the end included."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from orthanc_rt.records import db
from orthanc_rt.records.db import session_scope
from orthanc_rt.records.jobs import JobQuery, JobStore
from orthanc_rt.records.measurements import MeasurementQuery, MeasurementStore
from orthanc_rt.records.tables import Job, Measurement

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def stores(database_url):
    with session_scope(database_url) as s:
        # Three creation times and four values shared by 30 rows: most of the order comes from tie-breaking.
        s.add_all([Measurement(source="dvh", type="dose", metric="D95" if i % 2 else "Dmean", value=float(i % 4),
                               unit="Gy", created_at=T0 + timedelta(minutes=i % 3), study_instance_uid="1.2.3")
                   for i in range(30)])
        s.add_all([Job(id=f"dose-{i:02d}", kind="dose", state="succeeded", study_instance_uid="1.2.3",
                       created_at=T0 + timedelta(minutes=i % 2)) for i in range(12)])
    return JobStore(database_url), MeasurementStore(database_url)


@pytest.mark.parametrize("sort", ["id", "-id", "created_at", "-created_at", "value", "-value", "metric"])
def test_measurement_pages_agree_at_any_offset(stores, monkeypatch, sort):
    _, store = stores
    everything, total = store.query(MeasurementQuery(sort=sort, limit=500))
    assert total == 30 and len(everything) == 30
    column = sort.lstrip("-")
    descending = sort.startswith("-")
    keys = [(getattr(m, column), m.id) for m in everything]
    assert keys == sorted(keys, reverse=descending)  # ties: the id in the same direction
    for deferred_from in (10**9, 0):  # pages read directly, then through the index (deep-offset path)
        monkeypatch.setattr(db, "DEFERRED_JOIN_OFFSET", deferred_from)
        pages = [store.query(MeasurementQuery(sort=sort, limit=7, offset=o)) for o in range(0, 30, 7)]
        assert [m.id for page, _ in pages for m in page] == [m.id for m in everything]
        assert {t for _, t in pages} == {30}
        assert store.query(MeasurementQuery(sort=sort, limit=7, offset=40)) == ([], 30)


def test_filtered_deep_pages_keep_filter_and_total(stores, monkeypatch):
    _, store = stores
    monkeypatch.setattr(db, "DEFERRED_JOIN_OFFSET", 0)
    page, total = store.query(MeasurementQuery(metric="D95", sort="-value", limit=4, offset=4))
    assert total == 15 and len(page) == 4 and {m.metric for m in page} == {"D95"}


def test_job_pages_newest_first_ties_by_id(stores, monkeypatch):
    store, _ = stores
    everything, total = store.list(JobQuery(limit=100))
    assert total == 12
    # dose-01, 03, ... were created a minute later; within a creation time the larger id comes first.
    assert [j.id for j in everything[:3]] == ["dose-11", "dose-09", "dose-07"]
    assert [j.id for j in everything[6:9]] == ["dose-10", "dose-08", "dose-06"]
    monkeypatch.setattr(db, "DEFERRED_JOIN_OFFSET", 0)
    pages = [store.list(JobQuery(limit=5, offset=o)) for o in (0, 5, 10)]
    assert [j.id for page, _ in pages for j in page] == [j.id for j in everything]
    assert store.list(JobQuery(limit=5, offset=12)) == ([], 12)
    assert store.list(JobQuery(study="9.9", limit=5)) == ([], 0)


def test_plan_pages_carry_their_jobs_newest_first_ties_by_id(database_url, monkeypatch):
    from orthanc_rt.records.plans import PlanQuery, PlanStore
    from orthanc_rt.records.tables import Plan

    with session_scope(database_url) as s:
        # Plans 0-9, created in two minutes; the even ones have a job (odd ones are pending).
        s.add_all([Plan(id=f"plan-{i:02d}", job_id=f"plan-job-{i:02d}", workflow="proton-impt",
                        study_instance_uid="1.2.3", created_at=T0 + timedelta(minutes=i % 2)) for i in range(10)])
        s.add_all([Job(id=f"plan-job-{i:02d}", kind="plan", state="running" if i % 4 else "failed",
                       study_instance_uid="1.2.3", created_at=T0) for i in range(0, 10, 2)])
    store = PlanStore(database_url)
    everything, total = store.list(PlanQuery(limit=100))
    assert total == 10
    # Newer first; within a creation time the smaller id comes first (as before the one-statement paging).
    assert [p.id for p, _ in everything] == [f"plan-{i:02d}" for i in (1, 3, 5, 7, 9, 0, 2, 4, 6, 8)]
    assert all((job is None) == (int(plan.id[-2:]) % 2 == 1) for plan, job in everything)
    assert all(job.id == plan.job_id for plan, job in everything if job is not None)
    for deferred_from in (10**9, 0):
        monkeypatch.setattr(db, "DEFERRED_JOIN_OFFSET", deferred_from)
        pages = [store.list(PlanQuery(limit=3, offset=o)) for o in range(0, 10, 3)]
        assert [(p.id, j and j.id) for page, _ in pages for p, j in page] == \
            [(p.id, j and j.id) for p, j in everything]
        assert {t for _, t in pages} == {10}
        running, total = store.list(PlanQuery(status="running", limit=1, offset=1))
        assert total == 2 and [p.id for p, _ in running] == ["plan-06"]
        pending, total = store.list(PlanQuery(status="pending", limit=2, offset=2))
        assert total == 5 and [p.id for p, _ in pending] == ["plan-05", "plan-07"]
    assert store.list(PlanQuery(limit=5, offset=12)) == ([], 10)
