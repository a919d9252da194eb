"""Orthanc's own API under the role table (plugin/orthanc_access.py) and its audit queue
(plugin/archive_audit.py), without Orthanc; tests/integration/test_orthanc_access.py tries the same live."""
from __future__ import annotations

import base64
import logging
import threading
import time
from pathlib import Path

import pytest

from orthanc_rt.records import audit, db
from plugin import roles
from plugin.archive_audit import ArchiveAuditWriter
from plugin.orthanc_access import FAMILIES, UNLISTED, OrthancAccess, family_of, normalise
from plugin.roles import Access
from tests.support.orthanc_routes import FAMILY_SAMPLES, UNDOCUMENTED, documented_routes, sample_path

USERS = {"ada": "admin", "phil": "physicist", "dora": "dosimetrist", "vic": "viewer", "rt-worker": "worker"}
DOCS = Path(__file__).resolve().parents[2] / "docs"


def auth(user: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:pw".encode()).decode()}


def checker(audited: list | None = None) -> OrthancAccess:
    sink = None if audited is None else (lambda *entry: audited.append(entry))
    return OrthancAccess(Access(USERS, orthanc_authentication=True), sink)


def test_every_route_orthanc_serves_belongs_to_a_listed_family():
    """A route a newer Orthanc (or plugin) adds fails here until it is given a family: until then only an
    admin reaches it (the UNLISTED default)."""
    unlisted = []
    for route in [*documented_routes(), *UNDOCUMENTED]:
        method, path = route.split(" ", 1)
        if family_of(method, normalise(sample_path(path))) is UNLISTED:
            unlisted.append(route)
    assert not unlisted, f"routes without a family in plugin/orthanc_access.py: {unlisted}"


def test_every_family_has_a_sample_and_a_row_in_the_role_table():
    assert set(FAMILY_SAMPLES) == {f.name for f in FAMILIES}
    for name, (method, path, _) in FAMILY_SAMPLES.items():
        assert family_of(method, normalise(path)).name == name
    table = (DOCS / "rest-api.md").read_text()
    missing = [f.name for f in FAMILIES if f"| {f.name} |" not in table]
    assert not missing, f"docs/rest-api.md lacks rows for {missing}"


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_each_family_obeys_the_grants_of_each_role(family):
    method, path, _ = FAMILY_SAMPLES[family.name]
    access = checker()
    for user, role in USERS.items():
        verdict = access.verdict(method, path, auth(user))
        assert verdict.allowed == (family.permission in roles.GRANTS[role]), (user, family.name)
        assert verdict.user == user
    assert not access.verdict(method, path, auth("nobody")).allowed  # an Orthanc user without a role
    assert not access.verdict(method, path, {}).allowed


def test_what_the_issue_names():
    access = checker()
    viewer_may = ["GET /app/explorer.html", "GET /patients", "GET /studies/x/archive", "POST /tools/find",
                  "POST /studies/x/archive", "GET /dicom-web/studies?PatientID=1",
                  "GET /dicom-web/studies/1.2/series/3.4/metadata", "GET /wado?requestType=WADO",
                  "GET /instances/x/file", "GET /rt/jobs"]
    admin_only = ["POST /tools/reset", "POST /tools/shutdown", "DELETE /studies/x", "DELETE /patients/x",
                  "POST /studies/x/modify", "DELETE /changes", "DELETE /exports", "PUT /modalities/x",
                  "POST /modalities/x/store", "PUT /peers/x", "POST /peers/x/store", "POST /tools/execute-script",
                  "POST /dicom-web/servers/x/stow", "POST /tools/bulk-delete", "POST /studies/x/anonymize"]
    dosimetrist_may = ["POST /instances", "POST /dicom-web/studies", "POST /tools/create-dicom"]
    for route in viewer_may:
        assert access.verdict(*route.split(" "), auth("vic")).allowed, route
    for route in admin_only:
        assert not access.verdict(*route.split(" "), auth("phil")).allowed, route
        assert access.verdict(*route.split(" "), auth("ada")).allowed, route
    for route in dosimetrist_may:
        assert access.verdict(*route.split(" "), auth("dora")).allowed, route
        assert not access.verdict(*route.split(" "), auth("vic")).allowed, route
    assert access.verdict("DELETE", "/instances/x", auth("rt-worker")).allowed  # replacing its own result
    assert not access.verdict("DELETE", "/studies/x", auth("rt-worker")).allowed


@pytest.mark.parametrize("uri", ["/tools//reset/", "/TOOLS/Reset", "/tools/%72eset", "//tools/reset",
                                 "/rt/../tools/reset", "/tools/./reset", "/rt/%2e%2e/tools/reset",
                                 "/tools/reset%2f", "/tools/%2572eset"])
def test_no_spelling_of_a_path_gets_around_the_table(uri):
    assert not checker().verdict("POST", uri, auth("vic")).allowed


def test_method_override_is_checked_too():
    access = checker()
    headers = {**auth("vic"), "X-HTTP-Method-Override": "DELETE"}
    assert not access.verdict("POST", "/studies/x", headers).allowed
    assert not access.verdict(2, "/studies/x", headers).allowed  # orthanc-python 4.0 passes numbers


def test_rt_routes_are_left_to_the_router_for_everyone():
    access = checker()
    for headers in ({}, auth("nobody"), auth("vic")):
        assert access.verdict("DELETE", "/rt/jobs/x", headers).allowed


def test_development_mode_lets_everyone_through_and_misconfiguration_no_one():
    open_access = OrthancAccess(Access(None, orthanc_authentication=False))
    assert open_access.verdict("POST", "/tools/reset", {}).allowed
    broken = OrthancAccess(Access(USERS, orthanc_authentication=False))
    assert not broken.verdict("GET", "/patients", auth("ada")).allowed
    assert broken.verdict("GET", "/rt/health", auth("ada")).allowed  # the router answers 503 with the reason


def test_allowed_archive_changes_are_audited_with_the_user_reads_never():
    audited: list = []
    access = checker(audited)
    assert access.allow("/studies/abc", method=4, headers=auth("ada"), ip="10.0.0.1")
    assert audited == [("ada", "orthanc.delete", "/studies/abc",
                        {"method": "DELETE", "path": "/studies/abc", "family": "delete patients, studies, series",
                         "ip": "10.0.0.1", "outcome": "requested"})]
    audited.clear()
    assert access.allow("/tools/find", method=2, headers=auth("vic"))
    assert access.allow("/patients", method=1, headers=auth("vic"))
    assert access.allow("/instances", method=2, headers=auth("dora"))  # stores: Orthanc's change log has them
    assert not access.allow("/studies/abc", method=4, headers=auth("vic"))  # refused: logged, not audited
    assert audited == []
    assert access.allow("/modalities/pacs/store", method=2, headers=auth("ada"))
    assert access.allow("/tools/log-level", method=3, headers=auth("ada"))
    assert [a[1] for a in audited] == ["orthanc.send", "orthanc.configure"]


def test_the_filter_refuses_what_it_cannot_decide_and_never_raises(caplog):
    access = checker()
    with caplog.at_level(logging.ERROR, logger="orthanc_rt.plugin"):
        assert access.allow("/patients", method=1, headers=None) is False
        assert access.allow("/patients", method=1, headers={"authorization": object()}) is False
    assert access.allow("/patients", method="GET", headers=auth("vic")) is True


def test_a_decision_is_cheap():
    """The filter runs with the GIL held on every HTTP request: a few microseconds, not milliseconds."""
    access = checker()
    headers = auth("vic")
    start = time.perf_counter()
    for _ in range(2000):
        access.allow("/dicom-web/studies/1.2.3/series/4.5.6/instances/7.8.9/frames/1", method=1, headers=headers)
    per_call = (time.perf_counter() - start) / 2000
    assert per_call < 0.001, f"{per_call * 1e6:.0f} µs per decision"


def test_audit_writer_writes_in_order_to_the_chain(tmp_path):
    url = f"sqlite:///{tmp_path / 'a.sqlite'}"
    db.upgrade(url)
    writer = ArchiveAuditWriter(url)
    writer.start()
    for i in range(5):
        writer.submit("ada", "orthanc.delete", f"/studies/{i}", {"n": i})
    writer.stop()
    rows, total = audit.query(url, audit.AuditQuery(action="orthanc.delete"))
    assert total == 5 and [r["subject"] for r in reversed(rows)] == [f"/studies/{i}" for i in range(5)]
    assert rows[0]["actor"] == "ada" and audit.verify(url)["ok"]


def test_a_database_outage_neither_blocks_nor_loses_entries(caplog):
    written: list = []
    down = threading.Event()
    down.set()

    def record(url, actor, action, subject, before, after):
        if down.is_set():
            raise ConnectionError("database down")
        written.append(subject)
        return len(written)

    writer = ArchiveAuditWriter("postgresql://down", record=record, max_backoff_s=0.05)
    writer.start()
    start = time.perf_counter()
    with caplog.at_level(logging.ERROR, logger="orthanc_rt.plugin"):
        for i in range(100):
            writer.submit("ada", "orthanc.delete", str(i), {})
        assert time.perf_counter() - start < 0.1  # the request thread never waits for the database
        time.sleep(0.3)
    assert written == [] and any("audit trail unavailable" in r.message for r in caplog.records)
    down.clear()
    deadline = time.monotonic() + 10
    while len(written) < 100 and time.monotonic() < deadline:
        time.sleep(0.02)
    writer.stop()
    assert written == [str(i) for i in range(100)]


def test_a_full_queue_sends_entries_to_the_log_instead_of_blocking(caplog):
    writer = ArchiveAuditWriter("sqlite://", capacity=2)  # not started: nothing drains the queue
    with caplog.at_level(logging.ERROR, logger="orthanc_rt.plugin"):
        for i in range(3):
            writer.submit("ada", "orthanc.delete", f"/studies/{i}", {})
    assert writer.overflowed == 1
    assert any("/studies/2" in r.getMessage() for r in caplog.records)


def test_families_are_documented_in_the_order_they_are_matched():
    text = (DOCS / "rest-api.md").read_text()
    positions = [text.index(f"| {f.name} |") for f in (*FAMILIES, UNLISTED)]
    assert positions == sorted(positions)
