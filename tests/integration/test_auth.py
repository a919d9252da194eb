"""Production configuration: Orthanc authentication on, roles enforced route by route, workers with
their own credentials, no credentials in logs; the audit trail over HTTP, tampering detected."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from orthanc_rt.records import db
from orthanc_rt.records.tables import AuditEntry
from tests.support.routes import PERMISSION, SAMPLES, STATE_CHANGING
from tests.support.stack import AUTH_USERS, WORKER_USER, as_user, succeeded_dose_job

pytestmark = pytest.mark.integration


def _call(client, method: str, path: str):
    return client.http.request(method, client.base + path, timeout=60,
                               json={} if method in ("POST", "PUT") else None)


def test_orthanc_itself_requires_credentials(auth_stack):
    assert as_user(auth_stack, None).get("/system").status_code == 401
    assert as_user(auth_stack, "vic").get("/system").status_code == 200


@pytest.mark.parametrize("route", sorted(SAMPLES), ids=lambda r: f"{r[0]} {r[1]}")
def test_every_route_401_403_by_role(auth_stack, route):
    assert set(PERMISSION) == set(SAMPLES)
    method, _ = route
    path = SAMPLES[route]
    anonymous = as_user(auth_stack, None)
    assert _call(anonymous, method, path).status_code == 401
    wrong = as_user(auth_stack, "ada")
    wrong.http.auth = ("ada", "not-the-password")
    assert _call(wrong, method, path).status_code == 401
    r = _call(as_user(auth_stack, "nobody"), method, path)
    assert r.status_code == 403 and "no Orthanc-RT role" in r.json()["error"]
    for user, (_, role) in AUTH_USERS.items():
        if not role:
            continue
        r = _call(as_user(auth_stack, user), method, path)
        if role in STATE_CHANGING[PERMISSION[route]]:
            assert r.status_code not in (401, 403, 500), (user, r.status_code, r.text[:200])
        else:
            assert r.status_code == 403, (user, r.status_code)
            assert role in r.json()["error"]


def test_worker_uses_its_own_credentials_and_no_secret_is_logged(auth_stack):
    job = succeeded_dose_job(auth_stack, "auth-dose", "phil")
    phil = as_user(auth_stack, "phil")

    entries = phil.get("/rt/audit", params={"subject": job["id"]}).json()["items"]
    actions = [e["action"] for e in reversed(entries)]
    assert actions[0] == "dose.requested" and "job.started" in actions and actions[-1] == "job.succeeded"
    assert "result.stored" in [e["action"] for e in phil.get("/rt/audit", params={"action": "result.stored"})
                               .json()["items"]]

    secrets = [WORKER_USER[1], *(pw for pw, _ in AUTH_USERS.values())]
    for log in auth_stack.log_dir.glob("*.log"):
        text = log.read_text(errors="replace")
        assert not any(s in text for s in secrets), f"a password appears in {log.name}"


def test_audit_verify_detects_tampering_over_http(auth_stack):
    ada = as_user(auth_stack, "ada")
    ada.post("/rt/reconcile")
    assert ada.get("/rt/audit/verify").json()["ok"]
    engine = db.engine_for(auth_stack.database_url)
    table = AuditEntry.__table__
    with engine.begin() as conn:
        seq = conn.execute(sa.text("SELECT min(seq) FROM audit_log")).scalar()
        original = [dict(row) for row in conn.execute(
            sa.select(table).where(table.c.seq.in_([seq, seq + 1])).order_by(table.c.seq)).mappings()]
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE audit_log SET actor = 'mallory' WHERE seq = :s"), {"s": seq})
        report = ada.get("/rt/audit/verify").json()
        assert not report["ok"] and report["problems"][0]["seq"] == seq
        with engine.begin() as conn:  # and a deleted row
            conn.execute(sa.text("DELETE FROM audit_log WHERE seq = :s"), {"s": seq + 1})
        problems = ada.get("/rt/audit/verify").json()["problems"]
        assert any("missing" in p["problem"] for p in problems)
    finally:  # the stack is shared: later tests audit into this chain and verify it
        with engine.begin() as conn:
            conn.execute(table.delete().where(table.c.seq.in_([seq, seq + 1])))
            conn.execute(table.insert(), original)
    assert ada.get("/rt/audit/verify").json()["ok"]
