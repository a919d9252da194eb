"""Dose-check records: the verdict of each check, its numbers and its provenance, listed and exported.

The check job writes one row when it finishes (a re-run replaces it, under
the same id: the job's); every write is audited as `check.recorded` with the
verdict before and after. Lists are newest first and page like the other
records; `csv_rows` flattens them for a spreadsheet.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

from sqlalchemy import func, select

from orthanc_rt.records import audit
from orthanc_rt.records.db import aware, paged, read_scope, session_scope
from orthanc_rt.records.tables import Check, utcnow

PASS, WARN, FAIL = "pass", "warn", "fail"
VERDICTS = (PASS, WARN, FAIL)
CSV_COLUMNS = ("id", "created_at", "verdict", "criteria", "pass_rate_percent", "mode", "study_instance_uid",
               "plan_sop_instance_uid", "reference", "evaluated", "high_dose_ratio", "reason", "requested_by",
               "report_orthanc_id")


@dataclass(frozen=True)
class CheckQuery:
    study: str | None = None  # StudyInstanceUID or Orthanc study id
    plan: str | None = None  # the plan's SOPInstanceUID
    verdict: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50
    offset: int = 0


class CheckStore:
    def __init__(self, database_url: str):
        self.url = database_url

    def record(self, check: Check, *, actor: str) -> Check:
        """Write `check`, replacing an earlier row of the same id (a check run again)."""
        for field in ("reference_sop_instance_uids", "evaluated_sop_instance_uids", "results", "provenance"):
            if getattr(check, field) is None:  # column defaults apply only at the insert, after the audit
                setattr(check, field, {})
        with session_scope(self.url) as s:
            previous = s.get(Check, check.id)
            before = None if previous is None else {"verdict": previous.verdict,
                                                    "pass_rate_percent": previous.pass_rate_percent}
            if previous is not None:
                s.delete(previous)
                s.flush()
            check.created_at = utcnow()
            s.add(check)
            audit.record(s, actor, audit.CHECK_RECORDED, check.id, before,
                         {"verdict": check.verdict, "pass_rate_percent": check.pass_rate_percent,
                          "criteria": check.criteria, "plan": check.plan_sop_instance_uid,
                          "reference": check.reference_sop_instance_uids.get("uids", []),
                          "evaluated": check.evaluated_sop_instance_uids.get("uids", []),
                          "requested_by": check.requested_by})
        return check

    def get(self, check_id: str) -> Check | None:
        with read_scope(self.url) as s:
            return s.get(Check, check_id)

    def list(self, query: CheckQuery) -> tuple[list[Check], int]:
        stmt = select(Check)
        if query.study:
            stmt = stmt.where((Check.study_instance_uid == query.study) | (Check.orthanc_study_id == query.study))
        if query.plan:
            stmt = stmt.where(Check.plan_sop_instance_uid == query.plan)
        if query.verdict:
            stmt = stmt.where(Check.verdict == query.verdict)
        if query.since:
            stmt = stmt.where(Check.created_at >= query.since)
        if query.until:
            stmt = stmt.where(Check.created_at < query.until)
        with read_scope(self.url) as s:
            return paged(s, stmt, (Check.created_at.desc(), Check.id), query.limit, query.offset)

    def counts_by_verdict(self) -> dict[str, int]:
        """Every verdict with its number of checks (0 for a verdict no check has)."""
        with read_scope(self.url) as s:
            found = dict(s.execute(select(Check.verdict, func.count()).group_by(Check.verdict)).all())
        return {**{verdict: 0 for verdict in VERDICTS}, **found}


def to_dict(check: Check, *, full: bool = True) -> dict[str, Any]:
    """The public JSON form of a check; `full=False` leaves out the per-ROI table and statistics (lists)."""
    summary = {
        "id": check.id,
        "job_id": check.id,
        "mode": check.mode,
        "verdict": check.verdict,
        "reason": check.reason,
        "criteria": check.criteria,
        "pass_rate_percent": check.pass_rate_percent,
        "study_instance_uid": check.study_instance_uid,
        "orthanc_study_id": check.orthanc_study_id,
        "plan_sop_instance_uid": check.plan_sop_instance_uid or None,
        "reference_sop_instance_uids": check.reference_sop_instance_uids.get("uids", []),
        "evaluated_sop_instance_uids": check.evaluated_sop_instance_uids.get("uids", []),
        "report_orthanc_id": check.report_orthanc_id or None,
        "source": check.source,
        "requested_by": check.requested_by,
        "created_at": aware(check.created_at).isoformat(),
        "high_dose_ratio": check.results.get("high_dose_ratio"),
    }
    if full:
        summary["results"] = check.results
        summary["provenance"] = check.provenance
    return summary


def to_csv(checks: Iterable[Check]) -> bytes:
    """One row per check (CSV_COLUMNS), UTF-8, for a spreadsheet."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for check in checks:
        data = to_dict(check, full=False)
        data["reference"] = " ".join(data.pop("reference_sop_instance_uids"))
        data["evaluated"] = " ".join(data.pop("evaluated_sop_instance_uids"))
        writer.writerow(["" if data.get(column) is None else data[column] for column in CSV_COLUMNS])
    return buffer.getvalue().encode("utf-8")
