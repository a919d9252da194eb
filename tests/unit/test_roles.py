"""Roles: the permission table, the user from Orthanc's checked Basic header, and every route."""
from __future__ import annotations

import base64

import pytest

from orthanc_rt.errors import OrthancError
from orthanc_rt.records import db
from orthanc_rt.records.jobs import JobStore
from orthanc_rt.scheduling.queue import Dispatcher
from orthanc_rt.settings import Settings
from plugin import roles
from plugin.rest import Request
from plugin.roles import Access, basic_user
from tests.support.routes import PERMISSION, SAMPLES, STATE_CHANGING, make_router

USERS = {"ada": "admin", "phil": "physicist", "dora": "dosimetrist", "vic": "viewer"}


def auth(user: str, password: str = "secret") -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


class _NoOrthanc:
    def get_bytes(self, path):
        raise OrthancError(f"Orthanc {path}: Unknown resource", status=404)

    def post_bytes(self, path, body, content_type="application/json"):
        return b"[]"

    def delete(self, path):
        raise OrthancError("no", status=404)


@pytest.fixture
def api(tmp_path, redis_url):
    url = f"sqlite:///{tmp_path / 'rt.sqlite'}"
    db.upgrade(url)
    return make_router(_NoOrthanc(), Settings(database_url=url), JobStore(url),
                       Dispatcher(redis_url, job_timeout_s=60), Access(USERS, orthanc_authentication=True))


def test_grants_follow_the_issue():
    assert roles.GRANTS["viewer"] == {"read"}
    assert "plan-approve" not in roles.GRANTS["dosimetrist"] and "measure" in roles.GRANTS["dosimetrist"]
    assert "plan-approve" in roles.GRANTS["physicist"] and "configure" not in roles.GRANTS["physicist"]
    assert roles.GRANTS["admin"] == set(roles.PERMISSIONS)


def test_whoever_may_store_may_compute_so_an_upload_never_starts_work_its_sender_may_not_ask_for():
    """An arriving plan starts Monte Carlo: only roles that may ask for it may store one. The workers' account
    stores results only, which the triggers recognise by the job that made them (orthanc_rt.scheduling.origin)."""
    for role, granted in roles.GRANTS.items():
        if roles.STORE in granted and role != roles.WORKER:
            assert roles.COMPUTE in granted, role


def test_basic_user_reads_only_well_formed_headers():
    assert basic_user(auth("ada")) == "ada"
    assert basic_user({"Authorization": auth("o'brien", "p:w")["authorization"]}) == "o'brien"
    assert basic_user({}) is None
    assert basic_user({"authorization": "Bearer abc"}) is None
    assert basic_user({"authorization": "Basic !!!notbase64"}) is None
    assert basic_user({"authorization": "Basic " + base64.b64encode(b"nocolon").decode()}) is None


def test_unknown_role_in_configuration_is_refused():
    with pytest.raises(ValueError, match="unknown roles"):
        Access({"eve": "superuser"}, orthanc_authentication=True)


def test_roles_without_orthanc_authentication_refuse_everything():
    access = Access(USERS, orthanc_authentication=False)
    assert access.check(auth("ada"), roles.READ).status == 503


def test_without_roles_everyone_is_admin_in_development():
    decision = Access(None, orthanc_authentication=False).check({}, roles.CONFIGURE)
    assert decision.allowed and decision.identity.user == "anonymous"


def test_every_route_has_a_sample_and_a_known_permission(api):
    assert {(r.method, r.template) for r in api.routes} == set(SAMPLES) == set(PERMISSION)
    assert {(r.method, r.template): r.permission for r in api.routes} == PERMISSION


@pytest.mark.parametrize("route", sorted(SAMPLES), ids=lambda r: f"{r[0]} {r[1]}")
def test_route_by_route(api, route):
    method, template = route
    path = SAMPLES[route]
    permission = next(r.permission for r in api.routes if (r.method, r.template) == route)
    assert api.handle(Request(method, path)).status == 401
    assert api.handle(Request(method, path, headers=auth("stranger"))).status == 403
    for user, role in USERS.items():
        status = api.handle(Request(method, path, headers=auth(user), body=b"{}")).status
        if role in STATE_CHANGING[permission]:
            assert status not in (401, 403), (user, role, status)
        else:
            assert status == 403, (user, role, status)


def test_the_acting_user_is_recorded(api, tmp_path):
    from orthanc_rt.records import audit

    api.handle(Request("POST", "/rt/reconcile", headers=auth("phil")))
    r = api.handle(Request("DELETE", "/rt/jobs/nope", headers=auth("dora")))
    assert r.status == 404
    assert api.handle(Request("GET", "/rt/audit", headers=auth("vic"))).status == 403
    body = api.handle(Request("GET", "/rt/audit", query={"actor": "orthanc-rt-plugin"}, headers=auth("ada"))).body
    assert body["total"] == 0
    assert audit.verify(f"sqlite:///{tmp_path / 'rt.sqlite'}")["ok"]
