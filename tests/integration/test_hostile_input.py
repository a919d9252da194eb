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
    # Orthanc hands the plugin "a%00b" as sent; decoded, the NUL is refused as a control character
    # (PostgreSQL would fail on it): no server error.
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


HUGE = b"9" * 5000  # beyond Python's 4,300-digit limit for int(str)


@pytest.mark.parametrize("body,field", [
    (b'{"primaries": ' + HUGE + b"}", "primaries"), (b'{"primaries": -' + HUGE + b"}", "primaries"),
    (b'{"scoring_spacing_mm": ' + HUGE + b"}", "scoring_spacing_mm"),
    (b'{"wait_for_ct_seconds": 1' + b"0" * 400 + b"}", "wait_for_ct_seconds"),
    (b'{"primaries": 1000000000001}', "primaries"),
], ids=["huge", "huge-negative", "huge-spacing", "400-digits", "1e12"])
def test_huge_integers_get_400_naming_the_field(orthanc, plan_id, body, field):
    r = orthanc.post(f"/rt/instances/{plan_id}/dose", data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["field"] == field, (r.status_code, r.text[:300])
    plan = b'{"study": "1.2.3", "target_roi": "PTV", "prescription_gy": 2, "final_primaries": ' + HUGE + b"}"
    r = orthanc.post("/rt/plans", data=plan, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "final_primaries" in r.json()["error"], (r.status_code, r.text[:300])


SURROGATE = "\ud800"  # JSON "\ud800": a lone surrogate, which no database or DICOM file can store


@pytest.mark.parametrize("field", ["label", "roi_name", "metric"])
def test_lone_surrogates_in_measurements_get_400_naming_the_field(orthanc, field):
    body = {"type": "distance", "value": 1.0, "study_instance_uid": "1.2.826.0.1.3680043.8.498.1",
            field: f"a{SURROGATE}b"}
    r = orthanc.post("/rt/measurements", json=body)
    assert r.status_code == 400 and r.json()["field"] == field, (r.status_code, r.text[:300])
    created = orthanc.post("/rt/measurements", json={**body, field: "fine"})
    if created.status_code == 201:  # and an edit is refused the same way
        r = orthanc.put(f"/rt/measurements/{created.json()['id']}", json={field: SURROGATE})
        assert r.status_code == 400 and r.json()["field"] == field, r.text[:300]


@pytest.mark.parametrize("fields,expected", [
    ({"target_roi": SURROGATE}, "target_roi"),
    ({"objectives": [{"roi": f"PTV{SURROGATE}", "type": "DMin", "dose_gy": 2}]}, "objectives[0].roi"),
    ({"beamlet_primaries": 10**12}, "beamlet_primaries must be at most 2e+04"),
    ({"final_primaries": 10**12}, "final_primaries must be at most 1e+09"),
    ({"final_primaries": 1e300}, "final_primaries must be a whole number"),
    ({"objectives": [{"roi": "PTV", "type": "DMin", "dose_gy": 2}] * 10_000}, "objectives: at most 50"),
    ({"target_roi": "P" * 65}, "target_roi must be an ROI name (at most 64 characters)"),
    ({"objectives": [{"roi": "PTV", "type": "DMin", "dose_gy": 2, "robust": "yes"}]}, "robust must be true"),
], ids=["surrogate-target", "surrogate-objective", "beamlet-1e12", "final-1e12", "final-1e300",
        "10000-objectives", "long-roi", "robust-string"])
def test_plan_requests_out_of_bounds_get_400_naming_the_field(orthanc, fields, expected):
    body = {"study": "1.2.826.0.1.3680043.8.498.2", "target_roi": "PTV", "prescription_gy": 2.0, **fields}
    r = orthanc.post("/rt/plans", json=body)
    assert r.status_code == 400, (r.status_code, r.text[:300])
    assert expected in r.json().get("field", "") or expected in r.json()["error"], r.text[:300]


def test_workflows_publish_the_bounds_they_enforce(orthanc):
    from orthanc_rt.planning import request as plan_request

    parameters = {p["name"]: p for p in orthanc.get("/rt/workflows/proton-impt").json()["parameters"]}
    assert parameters["beamlet_primaries"]["maximum"] == plan_request.MAX_BEAMLET_PRIMARIES == 20_000
    assert parameters["final_primaries"]["maximum"] == plan_request.MAX_FINAL_PRIMARIES == 10**9
    assert parameters["objectives"]["max_items"] == plan_request.MAX_OBJECTIVES
    dose = {p["name"]: p for p in orthanc.get("/rt/workflows/proton-dose").json()["parameters"]}
    assert dose["primaries"]["maximum"] == 10**9
    over = {"study": "1.2.3", "target_roi": "PTV", "prescription_gy": 2.0,
            "final_primaries": parameters["final_primaries"]["maximum"] + 1}
    assert orthanc.post("/rt/plans", json=over).status_code == 400


@pytest.mark.parametrize("path", [
    "/rt/measurements?study=x-%2F..%2F..%2Fsystem", "/rt/measurements?dose=a-%2F..%2F..%2Ftools%2Fnow",
    "/rt/measurements?roi=a%00b", "/rt/measurements?job=" + "j" * 200,
    "/rt/doses/1.2.3/overlay.png?reference_gy=inf", "/rt/doses/1.2.3/overlay.png?reference_gy=nan",
    "/rt/doses/1.2.3/overlay.png?levels=50%2Cnan",
])
def test_decoded_query_values_are_checked_like_any_other(orthanc, path):
    # Decoding turns %2F into "/": an Orthanc id that is not one never reaches Orthanc's REST API.
    r = orthanc.get(path)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    _still_serving(orthanc)


@pytest.mark.parametrize("structure_set", ["../../system", "a b", "%00", "x" * 5000, "00000000-0000"])
def test_an_analysis_names_its_structure_set_by_orthanc_id_only(orthanc, plan_id, structure_set):
    r = orthanc.post(f"/rt/instances/{plan_id}/analysis", json={"structure_set": structure_set})
    assert r.status_code == 400 and r.json()["field"] == "structure_set", (r.status_code, r.text[:300])
    _still_serving(orthanc)


def test_measurement_details_must_be_finite(orthanc):
    body = b'{"type": "distance", "value": 1, "study_instance_uid": "1.2.3", "details": {"x": Infinity}}'
    r = orthanc.post("/rt/measurements", data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["field"] == "details", (r.status_code, r.text[:300])
