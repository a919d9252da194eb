"""A corpus of hostile input against the live stack: each gets a 4xx or a failed job with a readable
reason; never a 500, never a crash; Orthanc and the worker stay up."""
from __future__ import annotations

import http.client
import json
from urllib.parse import urlparse

import pytest

from tests.support import cases as util
from tests.support.senders import rest_upload

pytestmark = pytest.mark.integration

BAD_BODIES = [
    b"{", b"[1, 2]", b'"a string"', b"null", b"\xff\xfe\x00garbage", b'{"primaries": "many"}',
    b'{"primaries": -5}', b'{"primaries": NaN}', b'{"primaries": Infinity}', b'{"primaries": 1e400}',
    b'{"primaries": true}', b'{"primaries": 20000.5}', b'{"unknown": 1}',
    b'{"scoring_spacing_mm": []}', b'{"scoring_spacing_mm": 0}', b'{"wait_for_ct_seconds": -1}',
    b'{"primaries": {"$gt": 0}}', b'{"primaries": 20000, "primaries": "x"}',
    b"[" * 100_000,  # deep nesting
    json.dumps({"primaries": 20000, "pad": "x" * 2_000_000}).encode(),  # oversized
]


def _still_serving(orthanc) -> None:
    assert orthanc.get("/system").status_code == 200
    health = orthanc.get("/rt/health").json()
    assert health["checks"]["workers"]["count"] >= 1 and health["checks"]["database"]["ok"]


def _raw(base: str, method: str, path: str) -> int:
    """Send `path` byte for byte (requests would normalise dot segments)."""
    url = urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        conn.endheaders()
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.fixture(scope="module")
def plan_id(rt_stack):
    case = util.small_phantom_case("hostile-json")
    return rest_upload(rt_stack.orthanc_url, [case.plan])[0]


@pytest.mark.parametrize("body", BAD_BODIES, ids=lambda b: repr(b[:30]))
def test_bad_dose_request_bodies_get_4xx_with_a_reason(orthanc, plan_id, body):
    r = orthanc.post(f"/rt/instances/{plan_id}/dose", data=body, headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert r.json()["error"]


@pytest.mark.parametrize("params", [
    {"state": "'; DROP TABLE jobs; --"}, {"kind": "dose' OR '1'='1"}, {"limit": "1e9"}, {"limit": "-1"},
    {"offset": "abc"}, {"limit": "9" * 400}, {"study": "x" * 500},
])
def test_bad_job_filters_get_400(orthanc, params):
    r = orthanc.get("/rt/jobs", params=params)
    assert r.status_code == 400, (r.status_code, r.text[:300])


def test_nul_in_a_filter_is_harmless(orthanc):
    # Orthanc cuts GET arguments at NUL before the plugin sees them; the plugin also refuses
    # control characters (PostgreSQL would fail on NUL): either way no server error.
    r = orthanc.get("/rt/jobs", params={"study": "a\x00b"})
    assert r.status_code in (200, 400) and (r.status_code == 400 or r.json()["total"] == 0)


@pytest.mark.parametrize("study", ["' OR '1'='1", "1; DELETE FROM jobs", "日本語🙂", "%", "_", "\\", "Robert'); --"])
def test_odd_but_harmless_filters_find_nothing(orthanc, study):
    before = orthanc.get("/rt/jobs", params={"limit": 500}).json()["total"]
    r = orthanc.get("/rt/jobs", params={"study": study})
    assert r.status_code == 200 and r.json()["total"] == 0
    assert orthanc.get("/rt/jobs", params={"limit": 500}).json()["total"] == before


@pytest.mark.parametrize("params", [{"actor": "' OR 1=1 --"}, {"action": "job%."}, {"subject": "ü" * 100},
                                    {"since": "yesterday"}, {"until": "2026-13-45"}, {"actor": "a\x00"}])
def test_audit_filters_never_500(orthanc, params):
    r = orthanc.get("/rt/audit", params=params)
    assert r.status_code in (200, 400), (r.status_code, r.text[:300])
    if r.status_code == 200:
        assert r.json()["total"] == 0


@pytest.mark.parametrize("method,path", [
    ("GET", "/rt/jobs/..%2F..%2Fetc%2Fpasswd"), ("DELETE", "/rt/jobs/..%2f..%2fsystem"),
    ("POST", "/rt/instances/..%2F..%2Ftools%2Freset/dose"), ("GET", "/rt/" + "a" * 5000),
    ("GET", "/rt/jobs/" + "x" * 65), ("POST", "/rt/instances/../../../tools/shutdown/dose"),
    ("DELETE", "/rt/jobs/dose-1%2F..%2F..%2Fx"),
])
def test_path_traversal_like_names_are_refused(orthanc, method, path):
    assert 400 <= _raw(orthanc.base, method, path) < 500
    _still_serving(orthanc)


@pytest.mark.parametrize("path", ["/rt/jobs/../../system", "/rt/jobs/%00"])
def test_paths_orthanc_normalises_stay_harmless(orthanc, path):
    # Orthanc resolves dot segments and cuts at NUL itself ("/system", "/rt/jobs/"): legitimate reads.
    assert _raw(orthanc.base, "GET", path) < 500
    _still_serving(orthanc)


@pytest.mark.parametrize("make,expected", [
    (util.plan_with_negative_mu, "negative MU"),
    (util.plan_with_many_beams, "not a plausible plan"),
])
def test_impossible_plans_fail_readably(orthanc, make, expected):
    case = util.small_phantom_case(f"impossible-{make.__name__}")
    plan = make(case)
    rest_upload(orthanc.base, [*case.ct, case.rtstruct, plan])
    job = orthanc.wait_job(lambda j: j["state"] in ("succeeded", "failed"), study=case.study.study_instance_uid,
                           kind="dose", timeout_s=240)
    assert job["state"] == "failed" and expected in job["message"], job
    _still_serving(orthanc)


def test_rtstruct_whose_ct_never_arrives_fails_readably(orthanc):
    case = util.small_phantom_case("missing-ct")
    ids = rest_upload(orthanc.base, [case.rtstruct, case.plan])
    # Other primaries than the automatic job's (the wait is not part of a job's identity).
    r = orthanc.post(f"/rt/instances/{ids[1]}/dose", json={"primaries": 20001, "wait_for_ct_seconds": 0})
    assert r.status_code == 200, r.text
    job = orthanc.wait_final(r.json()["job"]["id"], timeout_s=120)
    assert job["state"] == "failed"
    assert "CT" in job["message"], job["message"]
    _still_serving(orthanc)


def test_non_plan_instances_are_refused_for_dose(orthanc):
    case = util.small_phantom_case("not-a-plan")
    ids = rest_upload(orthanc.base, [case.ct[0], case.rtstruct])
    for instance_id in ids:
        r = orthanc.post(f"/rt/instances/{instance_id}/dose", json={})
        assert r.status_code == 400 and "RT Ion Plan" in r.json()["error"]
    assert orthanc.post("/rt/instances/0000-ffff/dose", json={}).status_code == 404
