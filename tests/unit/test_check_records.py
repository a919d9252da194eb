"""Dose-check records (orthanc_rt/records/checks.py) on SQLite and PostgreSQL: replace on re-run, filters,
paging, CSV, audit."""
from __future__ import annotations

import csv
import io
from datetime import timedelta

from orthanc_rt.records import audit
from orthanc_rt.records.checks import CheckQuery, CheckStore, to_csv, to_dict
from orthanc_rt.records.tables import Check, utcnow


def _check(check_id: str, verdict: str, *, plan: str = "1.2.3", study: str = "1.2.9", rate: float = 97.0) -> Check:
    return Check(id=check_id, mode="recompute", study_instance_uid=study, orthanc_study_id="os-" + study,
                 plan_sop_instance_uid=plan, reference_sop_instance_uids={"uids": ["1.2.4", "1.2.5"]},
                 evaluated_sop_instance_uids={"uids": ["1.2.6"]}, criteria="3%/2mm, 10 % threshold",
                 pass_rate_percent=rate, verdict=verdict, reason="why", results={"high_dose_ratio": 1.01},
                 provenance={"engine": "MCsquare"}, source="auto", requested_by="auto-check")


def test_a_check_run_again_replaces_its_record_and_both_writes_are_audited(database_url):
    store = CheckStore(database_url)
    store.record(_check("check-a", "pass"), actor="w1")
    store.record(_check("check-a", "fail", rate=80.0), actor="w2")
    row = store.get("check-a")
    assert row.verdict == "fail" and row.pass_rate_percent == 80.0
    entries, _ = audit.query(database_url, audit.AuditQuery(action=audit.CHECK_RECORDED, subject="check-a"))
    assert [e["after"]["verdict"] for e in entries] == ["fail", "pass"]  # newest first
    assert entries[0]["before"] == {"verdict": "pass", "pass_rate_percent": 97.0}
    assert audit.verify(database_url)["ok"]


def test_filters_paging_and_csv(database_url):
    store = CheckStore(database_url)
    for n, verdict in enumerate(("pass", "warn", "fail", "pass")):
        store.record(_check(f"check-{n}", verdict, plan=f"1.2.{n}", study="1.2.9" if n < 3 else "1.2.8"),
                     actor="unit")
    assert [c.id for c in store.list(CheckQuery(verdict="pass"))[0]] == ["check-3", "check-0"]
    assert [c.id for c in store.list(CheckQuery(study="os-1.2.8"))[0]] == ["check-3"]
    assert [c.id for c in store.list(CheckQuery(plan="1.2.1"))[0]] == ["check-1"]
    page, total = store.list(CheckQuery(limit=2, offset=1))
    assert total == 4 and [c.id for c in page] == ["check-2", "check-1"]
    assert store.list(CheckQuery(since=utcnow() + timedelta(hours=1)))[1] == 0
    assert store.list(CheckQuery(until=utcnow() + timedelta(hours=1)))[1] == 4
    rows = list(csv.reader(io.StringIO(to_csv(store.list(CheckQuery())[0]).decode())))
    assert rows[0][:3] == ["id", "created_at", "verdict"] and len(rows) == 5
    first = dict(zip(rows[0], rows[1]))
    assert first["id"] == "check-3" and first["reference"] == "1.2.4 1.2.5" and first["high_dose_ratio"] == "1.01"
    brief = to_dict(store.get("check-1"), full=False)
    assert "results" not in brief and brief["verdict"] == "warn"
