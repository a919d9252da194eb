"""The audit trail: appended by job changes, filtered, and a tampered table is detected."""
from __future__ import annotations

from sqlalchemy import delete, update

from orthanc_rt.records import audit, jobs
from orthanc_rt.records.db import session_scope
from orthanc_rt.records.jobs import JobStore
from orthanc_rt.records.tables import AuditEntry, Job


def _job(jid: str) -> Job:
    return Job(id=jid, kind="dose", state=jobs.QUEUED, stage="queued", params={"primaries": 10},
               inputs={}, outputs={}, source="api", requested_by="alice")


def _history(url: str) -> None:
    store = JobStore(url)
    store.create(_job("dose-a"), actor="alice")
    store.start("dose-a", actor="worker-1")
    store.transition("dose-a", jobs.SUCCEEDED, from_states=[jobs.RUNNING], actor="worker-1",
                     outputs={"rtdose": {"orthanc_id": "x"}})
    store.create(_job("dose-b"), actor="bob")
    store.transition("dose-b", jobs.CANCELLED, from_states=jobs.ACTIVE_STATES, actor="bob")


def test_job_changes_are_audited_with_before_and_after(database_url):
    _history(database_url)
    rows, total = audit.query(database_url, audit.AuditQuery(subject="dose-a"))
    assert total == 3
    assert [r["action"] for r in reversed(rows)] == ["dose.requested", "job.started", "job.succeeded"]
    succeeded = rows[0]
    assert succeeded["actor"] == "worker-1"
    assert succeeded["before"] == {"state": "running"}
    assert succeeded["after"]["state"] == "succeeded" and succeeded["after"]["outputs"]["rtdose"]
    assert audit.verify(database_url)["ok"]


def test_a_refused_transition_is_not_audited(database_url):
    _history(database_url)
    store = JobStore(database_url)
    assert not store.transition("dose-b", jobs.RUNNING, from_states=[jobs.QUEUED], actor="late-worker")
    assert audit.query(database_url, audit.AuditQuery(actor="late-worker"))[1] == 0


def test_filters_and_pagination(database_url):
    _history(database_url)
    for i in range(5):
        audit.record(database_url, "carol", audit.CONFIG_LOADED, "", None, {"n": i, "name": "O'Brien; DROP"})
    assert audit.query(database_url, audit.AuditQuery(action="job."))[1] == 3
    page, total = audit.query(database_url, audit.AuditQuery(actor="carol", limit=2, offset=1))
    assert total == 5 and [p["after"]["n"] for p in page] == [3, 2]
    assert audit.query(database_url, audit.AuditQuery(actor="' OR 1=1 --"))[1] == 0
    assert audit.query(database_url, audit.AuditQuery(action="job%."))[1] == 0  # LIKE wildcards are literal


def test_verify_detects_an_edited_entry(database_url):
    _history(database_url)
    with session_scope(database_url) as s:
        s.execute(update(AuditEntry).where(AuditEntry.seq == 2).values(actor="mallory"))
    report = audit.verify(database_url)
    assert not report["ok"]
    assert report["problems"][0]["seq"] == 2 and "edited" in report["problems"][0]["problem"]


def test_verify_detects_a_deleted_entry(database_url):
    _history(database_url)
    with session_scope(database_url) as s:
        s.execute(delete(AuditEntry).where(AuditEntry.seq == 3))
    report = audit.verify(database_url)
    assert not report["ok"]
    assert any(p["seq"] == 4 and "missing" in p["problem"] for p in report["problems"])


def test_verify_detects_a_rewritten_and_renumbered_tail(database_url):
    """Deleting a row and renumbering the rest still breaks the links."""
    _history(database_url)
    with session_scope(database_url) as s:
        s.execute(delete(AuditEntry).where(AuditEntry.seq == 2))
        s.execute(update(AuditEntry).where(AuditEntry.seq > 2).values(seq=AuditEntry.seq - 1))
    report = audit.verify(database_url)
    assert not report["ok"]


def _append_many(url: str, actor: str, count: int) -> None:
    for i in range(count):
        audit.record(url, actor, "test.concurrent", f"{actor}-{i}")


def test_processes_appending_at_once_keep_one_unbroken_chain(database_url):
    """The workers, the plugin's threads and the launcher append from separate processes (a SQLite file
    shared by all of them in a single-host installation)."""
    import multiprocessing

    from orthanc_rt.records import db

    db.engine_for.cache_clear()  # each child opens its own connections
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_append_many, args=(database_url, f"writer-{n}", 40)) for n in range(4)]
    for p in writers:
        p.start()
    for p in writers:
        p.join(timeout=120)
    assert [p.exitcode for p in writers] == [0, 0, 0, 0]
    entries, total = audit.query(database_url, audit.AuditQuery(action="test.concurrent", limit=500))
    assert total == 160
    assert sorted(e["seq"] for e in entries) == list(range(entries[-1]["seq"], entries[-1]["seq"] + 160))
    assert audit.verify(database_url)["ok"] is True
