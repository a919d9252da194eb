"""Orthanc's own API, DICOMweb, the Explorer and the DICOM port of the production configuration, tried
as every role and as an attacker holding a viewer's password: only the role table's rights work, every
refusal is a 403 (or a refused association) and Orthanc keeps serving; allowed archive changes are in
the audit trail with the user."""
from __future__ import annotations

import time

import pytest
import requests

from orthanc_rt.records import audit
from plugin import roles
from plugin.orthanc_access import FAMILIES
from tests.support import cases as util
from tests.support.browser import artifact
from tests.support.orthanc_routes import FAMILY_SAMPLES, REFUSED_BY_ORTHANC_ITSELF
from tests.support.senders import c_store_result, dcmtk, rest_upload
from tests.support.stack import (
    AUTH_USERS,
    KNOWN_AET,
    SPOOFED_AET,
    UNKNOWN_AET,
    WORKER_USER,
    as_user,
    succeeded_dose_job,
)

pytestmark = pytest.mark.integration

CALLERS = {**{user: role for user, (_, role) in AUTH_USERS.items()}, WORKER_USER[0]: "worker"}


def _session(cfg, user: str | None, password: str | None = None) -> requests.Session:
    session = requests.Session()
    if user is not None:
        session.auth = (user, password or (WORKER_USER[1] if user == WORKER_USER[0] else AUTH_USERS[user][0]))
    return session


def _send(cfg, session: requests.Session, method: str, path: str, body: object = None, **kw) -> requests.Response:
    data = body if isinstance(body, bytes) else None
    payload = None if isinstance(body, bytes) or body is None else body
    return session.request(method, cfg.orthanc_url + path, data=data, json=payload, timeout=60, **kw)


def _refusals_logged(cfg) -> str:
    return (cfg.log_dir / "orthanc.log").read_text(errors="replace")


def _still_serving(cfg) -> None:
    r = as_user(cfg, "vic").get("/system")
    assert r.status_code == 200 and r.json()["Name"], r.text[:200]


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_every_orthanc_route_family_by_role(auth_stack, family):
    method, path, body = FAMILY_SAMPLES[family.name]
    assert _send(auth_stack, _session(auth_stack, None), method, path, body).status_code == 401
    assert _send(auth_stack, _session(auth_stack, "vic", "not-the-password"), method, path, body).status_code == 401
    for user, role in CALLERS.items():
        before = _refusals_logged(auth_stack)
        r = _send(auth_stack, _session(auth_stack, user), method, path, body)
        refusal = f"refused {method} {path.split('?')[0]!r} to {user!r}"
        granted = bool(role) and family.permission in roles.GRANTS[role]
        if not granted:
            assert r.status_code == 403, (user, r.status_code, r.text[:200])
            assert refusal in _refusals_logged(auth_stack)[len(before):], "refused by the filter, not by Orthanc"
        elif family.name in REFUSED_BY_ORTHANC_ITSELF:  # Orthanc's own 403: the filter let it through
            assert refusal not in _refusals_logged(auth_stack)[len(before):], user
        else:
            assert r.status_code not in (401, 403), (user, r.status_code, r.text[:200])
    _still_serving(auth_stack)


def test_an_attacker_with_a_viewers_password_changes_nothing(auth_stack):
    case = util.small_phantom_case("attacker")
    dora = ("dora", AUTH_USERS["dora"][0])
    ids = rest_upload(auth_stack.orthanc_url, [*case.ct[:2], case.rtstruct], auth=dora)
    admin = as_user(auth_stack, "ada")
    instance = admin.get(f"/instances/{ids[0]}").json()
    series = instance["ParentSeries"]
    study = admin.get(f"/series/{series}").json()["ParentStudy"]
    patient = admin.get(f"/studies/{study}").json()["ParentPatient"]
    last_change = admin.get("/changes?last").json()["Last"]
    uid = case.study.study_instance_uid
    vic = _session(auth_stack, "vic")
    attacks = [
        ("POST", "/tools/reset", None), ("POST", "/tools/shutdown", None),
        ("DELETE", f"/studies/{study}", None), ("DELETE", f"/patients/{patient}", None),
        ("DELETE", f"/series/{series}", None), ("DELETE", f"/instances/{ids[0]}", None),
        ("POST", f"/studies/{study}/modify", {"Replace": {"PatientName": "PWNED"}, "KeepSource": False,
                                               "Force": True}),
        ("POST", f"/patients/{patient}/anonymize", {"KeepSource": False}),
        ("POST", "/tools/create-dicom", {"Tags": {"PatientName": "PWNED", "Modality": "OT"}}),
        ("POST", "/tools/bulk-delete", {"Resources": [study]}),
        ("DELETE", "/changes", None), ("DELETE", "/exports", None),
        ("PUT", "/modalities/evil", {"AET": "EVIL", "Host": "192.0.2.66", "Port": 104}),
        ("POST", "/modalities/tps/store", [study]), ("POST", "/modalities/tps/move",
                                                      {"Level": "Study", "Resources": [{"StudyInstanceUID": uid}]}),
        ("PUT", "/peers/evil", {"Url": "http://192.0.2.66:8042/"}), ("POST", "/peers/evil/store", [study]),
        ("PUT", "/dicom-web/servers/evil", {"Url": "http://192.0.2.66/dicom-web/"}),
        ("POST", "/tools/execute-script", b"os.exit()"), ("PUT", "/tools/log-level", b"trace"),
        ("POST", f"/jobs/{study}/cancel", None), ("PUT", f"/patients/{patient}/protected", b"1"),
        ("PUT", f"/studies/{study}/metadata/1024", b"x"), ("POST", "/instances", b"\0" * 200),
        ("POST", f"/dicom-web/studies/{uid}", b"--x--"),
        ("POST", f"/studies/{study}", None, {"X-HTTP-Method-Override": "DELETE"}),
        ("POST", "/tools//reset/", None), ("POST", "/TOOLS/RESET", None), ("POST", "/tools/%72eset", None),
        ("POST", "/rt/../tools/reset", None), ("DELETE", f"/studies/{study}/", None),
        ("GET", "/modalities?expand", None), ("GET", "/peers/tps/configuration", None),
    ]
    for method, path, body, *headers in attacks:
        r = _send(auth_stack, vic, method, path, body, headers=headers[0] if headers else None)
        assert r.status_code == 403, (method, path, r.status_code, r.text[:200])
        assert r.text == ""  # no detail handed to the attacker

    _still_serving(auth_stack)
    assert admin.get(f"/studies/{study}").json()["MainDicomTags"]["StudyInstanceUID"] == uid
    assert sorted(admin.get(f"/studies/{study}/instances").json(), key=lambda i: i["ID"]) and \
        {i["ID"] for i in admin.get(f"/studies/{study}/instances").json()} == set(ids)
    assert "evil" not in admin.get("/modalities").json() and "evil" not in admin.get("/peers").json()
    assert admin.get("/changes?last").json()["Last"] >= last_change
    assert admin.get("/patients/" + patient).json()["MainDicomTags"]["PatientName"] != "PWNED"
    entries, _ = audit.query(auth_stack.db_url, audit.AuditQuery(actor="vic", action="orthanc."))
    assert entries == []  # refused requests are logged by Orthanc, never recorded as changes
    # What a viewer may do still works: the Explorer, QIDO/WADO, a study download.
    for path in ("/app/explorer.html", f"/dicom-web/studies/{uid}/series", f"/studies/{study}/archive",
                 f"/instances/{ids[0]}/file"):
        assert vic.get(auth_stack.orthanc_url + path, timeout=60).status_code == 200, path
    assert vic.post(auth_stack.orthanc_url + "/tools/find", json={"Level": "Study", "Query": {"StudyInstanceUID": uid}},
                    timeout=60).json() == [study]


def test_archive_changes_are_audited_with_the_user(auth_stack):
    case = util.small_phantom_case("audited")
    ids = rest_upload(auth_stack.orthanc_url, case.ct[:2], auth=("phil", AUTH_USERS["phil"][0]))
    ada = _session(auth_stack, "ada")
    assert _send(auth_stack, ada, "PUT", "/modalities/audited",
                 {"AET": "AUDITED", "Host": "192.0.2.7", "Port": 104}).status_code == 200
    assert _send(auth_stack, ada, "DELETE", "/modalities/audited").status_code == 200
    assert _send(auth_stack, ada, "DELETE", f"/instances/{ids[0]}").status_code == 200
    expected = [("orthanc.configure", "PUT", "/modalities/audited"),
                ("orthanc.configure", "DELETE", "/modalities/audited"),
                ("orthanc.delete-instance", "DELETE", f"/instances/{ids[0]}")]
    deadline = time.monotonic() + 20  # written by the plugin's audit thread, not on the request
    found: list = []
    while time.monotonic() < deadline:
        entries, _ = audit.query(auth_stack.db_url, audit.AuditQuery(actor="ada", action="orthanc."))
        found = [(e["action"], e["after"]["method"], e["subject"]) for e in reversed(entries)]
        if all(x in found for x in expected):
            break
        time.sleep(0.3)
    assert [f for f in found if f in expected] == expected
    entry = next(e for e in entries if e["subject"] == f"/instances/{ids[0]}")
    assert entry["after"]["outcome"] == "requested" and entry["after"]["ip"]
    assert as_user(auth_stack, "ada").get("/rt/audit/verify").json()["ok"]
    # Reads, uploads and refusals add nothing.
    entries, _ = audit.query(auth_stack.db_url, audit.AuditQuery(actor="phil", action="orthanc."))
    assert entries == []


def _study_find(aet: str, port: int, uid: str):
    return dcmtk("findscu", port, ["-S", "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={uid}"],
                 calling=aet, timeout_s=60)


@pytest.mark.parametrize("aet", [UNKNOWN_AET, SPOOFED_AET], ids=["unknown-ae", "spoofed-ae"])
def test_dicom_port_refuses_unknown_and_spoofed_ae_titles(auth_stack, aet, tmp_path):
    case = util.small_phantom_case(f"dicom-{aet.lower()}")
    port = auth_stack.dicom_port
    echo = dcmtk("echoscu", port, calling=aet, timeout_s=60)
    assert echo.returncode != 0 and "Association Rejected" in echo.stderr + echo.stdout, echo.stderr
    store = c_store_result(port, case.ct[:1], tmp_path / "send", calling=aet)
    assert store.returncode != 0 and "Association Rejected" in store.stderr + store.stdout, store.stderr
    assert as_user(auth_stack, "vic").study_instances(case.study.study_instance_uid, "CT") == []
    rest_upload(auth_stack.orthanc_url, case.ct[:1], auth=("dora", AUTH_USERS["dora"][0]))
    find = _study_find(aet, port, case.study.study_instance_uid)
    assert find.returncode != 0 and "Association Rejected" in find.stderr + find.stdout, find.stderr
    move = dcmtk("movescu", port, ["-S", "-aem", aet, "-k", "QueryRetrieveLevel=STUDY",
                                   "-k", f"StudyInstanceUID={case.study.study_instance_uid}"],
                 calling=aet, timeout_s=60)
    assert move.returncode != 0 and "Association Rejected" in move.stderr + move.stdout, move.stderr
    _still_serving(auth_stack)


def test_dicom_port_serves_a_configured_modality_from_its_host(auth_stack, tmp_path):
    case = util.small_phantom_case("dicom-known")
    port = auth_stack.dicom_port
    assert dcmtk("echoscu", port, calling=KNOWN_AET, timeout_s=60).returncode == 0
    store = c_store_result(port, case.ct[:2], tmp_path / "send", calling=KNOWN_AET)
    assert store.returncode == 0, store.stderr
    uid = case.study.study_instance_uid
    assert len(as_user(auth_stack, "vic").study_instances(uid, "CT")) == 2
    find = _study_find(KNOWN_AET, port, uid)
    assert find.returncode == 0 and uid in find.stderr + find.stdout, find.stderr
    tps_port = auth_stack.orthanc_overrides["DicomModalities"]["tps"]["Port"]
    received = tmp_path / "moved"
    received.mkdir()
    move = dcmtk("movescu", port, ["-S", "-aem", KNOWN_AET, "--port", str(tps_port), "-od", str(received),
                                   "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={uid}"],
                 calling=KNOWN_AET, timeout_s=120)
    assert move.returncode == 0, move.stderr
    assert len(list(received.iterdir())) == 2


def test_an_automatic_job_names_the_user_whose_upload_set_it_off(auth_stack):
    case = util.small_phantom_case("uploader")
    rest_upload(auth_stack.orthanc_url, [case.plan], auth=("dora", AUTH_USERS["dora"][0]))
    job = as_user(auth_stack, "ada").wait_job(lambda j: True, study=case.study.study_instance_uid, kind="dose",
                                              timeout_s=60)
    assert job["requested_by"] == "auto-dose; REST upload by dora" and job["source"] == "auto"


def test_a_job_whose_result_was_deleted_says_so(auth_stack):
    job = succeeded_dose_job(auth_stack, "result-deleted", "vic")
    vic = as_user(auth_stack, "vic")
    assert vic.get(f"/rt/jobs/{job['id']}").json()["results_deleted"] == []
    dose = job["outputs"]["rtdose"]["orthanc_id"]
    assert as_user(auth_stack, "dora").delete(f"/instances/{dose}").status_code == 403  # not a dosimetrist's
    assert as_user(auth_stack, "ada").delete(f"/instances/{dose}").status_code == 200
    assert vic.get(f"/rt/jobs/{job['id']}").json()["results_deleted"] == ["rtdose"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        entries, _ = audit.query(auth_stack.db_url, audit.AuditQuery(action="orthanc.delete-instance",
                                                                     subject=f"/instances/{dose}"))
        if entries:
            break
        time.sleep(0.3)
    assert [e["actor"] for e in entries] == ["ada"]


@pytest.mark.browser
def test_orthanc_explorer_works_for_a_viewer(auth_stack, browser):
    case = util.small_phantom_case("explorer-viewer")
    ids = rest_upload(auth_stack.orthanc_url, case.ct[:2], auth=("dora", AUTH_USERS["dora"][0]))
    study = as_user(auth_stack, "vic").get(f"/instances/{ids[0]}/study").json()["ID"]
    context = browser.new_context(http_credentials={"username": "vic", "password": AUTH_USERS["vic"][0]})
    page = context.new_page()
    refused: list[str] = []
    page.on("response", lambda r: refused.append(r.url) if r.status == 403 else None)
    page.goto(f"{auth_stack.orthanc_url}/app/explorer.html#study?uuid={study}", wait_until="networkidle")
    page.get_by_text(case.study.study_instance_uid).first.wait_for(timeout=30_000)
    page.goto(f"{auth_stack.orthanc_url}/app/explorer.html#find-patients", wait_until="networkidle")
    try:
        page.get_by_text(case.study.patient_id).first.wait_for(timeout=30_000)
    finally:
        page.screenshot(path=str(artifact("explorer-as-viewer.png")))
        context.close()
    assert refused == [], f"the Explorer asked for what a viewer may not have: {refused}"
