"""The audit trail: every state change appended with who, what, when, before/after, hash-chained.

Entry n stores hash_n = sha256(hash_{n-1} + canonical(n, at, actor, action,
subject, before, after)). `verify` recomputes the chain, so an edited entry,
a deleted entry (gap in `seq`, or a broken link) or a re-ordered one is
found. Removing entries from the *end* leaves a valid shorter chain; the
docs/reliability-security.md says so (an external anchor, e.g. logging the head hash, closes that).

`record` appends inside the caller's transaction, so the change and its
audit entry commit together. Appenders are serialised: on PostgreSQL by a
transaction-scoped advisory lock, on SQLite by the database's single writer
(record is called after the caller's own write, which holds the write lock).
The primary key on `seq` and the unique `prev_hash` make a fork impossible
even if that reasoning were wrong: the second writer fails rather than fork.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterator

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from orthanc_rt.records.db import session_scope
from orthanc_rt.records.tables import AuditEntry, utcnow

GENESIS = "0" * 64
_PG_LOCK_KEY = 0x0A0D17  # any constant shared by all appenders

# The actions recorded (kept in one place so reports and filters agree).
# A job of any kind was requested. The stored value predates the other kinds (dose jobs came first) and stays:
# it is in every existing audit chain (each entry's hash covers it) and in filters people saved.
JOB_REQUESTED = "dose.requested"
JOB_PREFIX = "job."  # job.started, job.succeeded, job.failed, job.cancelled, job.queued, job.waiting-for-input
RESULT_STORED = "result.stored"
CONFIG_LOADED = "configuration.loaded"
RECONCILE = "reconcile.run"
AUTO_COMPUTE_REFUSED = "auto-compute.refused"  # an upload whose source may not start Monte Carlo by itself
MEASUREMENT_CREATED = "measurement.created"
MEASUREMENT_EDITED = "measurement.edited"
MEASUREMENT_DELETED = "measurement.deleted"
CHECK_RECORDED = "check.recorded"  # a dose check's verdict written (before: the verdict it replaced)
# A request to Orthanc's own API that changes the archive or its configuration, let through by the role
# table: "orthanc." + the permission it needed (orthanc.delete, orthanc.send, ...; plugin/orthanc_access.py).
ORTHANC_PREFIX = "orthanc."


def record(session_or_url: Session | str, actor: str, action: str, subject: str = "",
           before: dict[str, Any] | None = None, after: dict[str, Any] | None = None) -> int:
    """Append one entry; returns its sequence number. A URL opens (and commits) its own transaction."""
    if isinstance(session_or_url, str):
        with session_scope(session_or_url) as s:
            return record(s, actor, action, subject, before, after)
    s = session_or_url
    dialect = s.get_bind().dialect.name
    if dialect == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
    elif dialect == "sqlite":
        # Take SQLite's write lock before reading the chain's end: Python's sqlite3 begins the transaction only
        # at the first write, so two processes would otherwise read the same last entry and append the same seq.
        # A write statement takes the lock even when it changes nothing; busy_timeout makes the others wait.
        s.execute(text("UPDATE audit_log SET seq = seq WHERE 0"))
    last = s.execute(select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)).first()
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    at = utcnow()
    before, after = _plain(before), _plain(after)
    entry = AuditEntry(seq=seq, at=at, actor=actor[:128], action=action[:64], subject=subject[:128],
                       before=before, after=after, prev_hash=prev)
    entry.hash = _hash(prev, entry)
    s.add(entry)
    s.flush()
    return seq


@dataclass(frozen=True)
class AuditQuery:
    actor: str | None = None
    action: str | None = None  # exact, or a prefix ending in "." ("job.")
    subject: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100
    offset: int = 0


def query(url: str, q: AuditQuery) -> tuple[list[dict[str, Any]], int]:
    stmt = select(AuditEntry)
    if q.actor:
        stmt = stmt.where(AuditEntry.actor == q.actor)
    if q.action:
        if q.action.endswith("."):
            stmt = stmt.where(AuditEntry.action.startswith(q.action, autoescape=True))
        else:
            stmt = stmt.where(AuditEntry.action == q.action)
    if q.subject:
        stmt = stmt.where(AuditEntry.subject == q.subject)
    if q.since:
        stmt = stmt.where(AuditEntry.at >= q.since)
    if q.until:
        stmt = stmt.where(AuditEntry.at < q.until)
    with session_scope(url) as s:
        total = s.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        rows = s.scalars(stmt.order_by(AuditEntry.seq.desc()).limit(q.limit).offset(q.offset)).all()
        return [to_dict(r) for r in rows], int(total)


def verify(url: str) -> dict[str, Any]:
    """Recompute the chain; `ok` is False with the first problems listed when anything was altered."""
    problems: list[dict[str, Any]] = []
    checked = 0
    prev_seq, prev_hash = 0, GENESIS
    for entry in _entries(url):
        checked += 1
        if entry.seq != prev_seq + 1:
            problems.append({"seq": entry.seq, "problem": f"entries {prev_seq + 1}..{entry.seq - 1} are missing"})
        if entry.prev_hash != prev_hash:
            problems.append({"seq": entry.seq, "problem": "link to the previous entry is broken"})
        if _hash(entry.prev_hash, entry) != entry.hash:
            problems.append({"seq": entry.seq, "problem": "content does not match its hash (edited)"})
        prev_seq, prev_hash = entry.seq, entry.hash
        if len(problems) >= 50:
            break
    return {"ok": not problems, "checked": checked, "head": {"seq": prev_seq, "hash": prev_hash},
            "problems": problems}


def to_dict(e: AuditEntry) -> dict[str, Any]:
    return {"seq": e.seq, "at": _iso(e.at), "actor": e.actor, "action": e.action, "subject": e.subject,
            "before": e.before, "after": e.after, "hash": e.hash}


def _entries(url: str, batch: int = 1000) -> Iterator[AuditEntry]:
    after = 0
    while True:
        with session_scope(url) as s:
            rows = s.scalars(select(AuditEntry).where(AuditEntry.seq > after).order_by(AuditEntry.seq)
                             .limit(batch)).all()
        if not rows:
            return
        yield from rows
        after = rows[-1].seq


def _hash(prev_hash: str, e: AuditEntry) -> str:
    payload = json.dumps([e.seq, _iso(e.at), e.actor, e.action, e.subject, e.before, e.after],
                         sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256((prev_hash + payload).encode()).hexdigest()


def _iso(value: datetime) -> str:
    # SQLite hands back naive UTC, PostgreSQL the session's zone: hash one form.
    value = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds")


def _plain(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the JSON column gives back after a round trip (so the hash is the same on reading)."""
    return None if value is None else json.loads(json.dumps(value, default=str))
