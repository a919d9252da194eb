"""Query values reach the routes as HTTP clients encoded them, through the real Orthanc (which hands the
plugin the raw, still percent-encoded values): `requests` with params=, form encoding ("+" for a space),
percent-encoding (%20, what JavaScript's encodeURIComponent writes) and non-ASCII names; /rt/health shows
the values in use."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from urllib.parse import quote, quote_plus

import pytest

from tests.support import cases as util
from tests.support.stack import Client

pytestmark = pytest.mark.integration

ROIS = ["Parotid L", "Parótida ü", "PTV+5mm", "GTV 70 Gy (50%)", "Rückenmark&Hirn=1"]


@pytest.fixture(scope="module")
def study(rt_stack):
    """A study with one manual measurement per odd ROI name."""
    client = Client(rt_stack.orthanc_url)
    uid = util.dvh_case("it-query-encoding").study.study_instance_uid
    for roi in ROIS:
        r = client.post("/rt/measurements", json={"type": "distance", "value": 1.0, "study_instance_uid": uid,
                                                   "roi_name": roi, "label": roi})
        assert r.status_code == 201, r.text
    return uid


@pytest.mark.parametrize("roi", ROIS)
def test_requests_params_find_each_roi(orthanc, study, roi):
    r = orthanc.get("/rt/measurements", params={"study": study, "roi": roi})
    assert r.status_code == 200, r.text
    assert [row["roi_name"] for row in r.json()["items"]] == [roi]


@pytest.mark.parametrize("roi", ROIS)
@pytest.mark.parametrize("encode", [quote_plus, lambda v: quote(v, safe="")], ids=["form", "percent"])
def test_form_and_percent_encoded_urls_find_each_roi(orthanc, study, roi, encode):
    r = orthanc.get(f"/rt/measurements?study={study}&roi={encode(roi)}")
    assert r.status_code == 200, r.text
    assert [row["roi_name"] for row in r.json()["items"]] == [roi]


def test_a_plus_sign_is_a_space_and_percent_2b_a_plus(orthanc, study):
    assert [row["roi_name"] for row in orthanc.get(f"/rt/measurements?study={study}&roi=Parotid+L").json()["items"]] \
        == ["Parotid L"]
    assert [row["roi_name"] for row in orthanc.get(f"/rt/measurements?study={study}&roi=PTV%2B5mm").json()["items"]] \
        == ["PTV+5mm"]
    assert orthanc.get(f"/rt/measurements?study={study}&roi=PTV+5mm").json()["total"] == 0  # "PTV 5mm"


def test_iso_date_times_from_a_client_filter_the_audit_trail(orthanc, study):
    now = datetime.now(timezone(timedelta(hours=1)))  # "+01:00": the "+" and ":" arrive percent-encoded
    since, until = (now - timedelta(hours=1)).isoformat(), (now + timedelta(hours=1)).isoformat()
    r = orthanc.get("/rt/audit", params={"action": "measurement.created", "since": since, "until": until})
    assert r.status_code == 200, r.text
    assert r.json()["total"] >= len(ROIS)
    r = orthanc.get("/rt/audit", params={"action": "measurement.created", "until": (now - timedelta(days=3650))
                                         .isoformat()})
    assert r.status_code == 200 and r.json()["total"] == 0, r.text


@pytest.mark.parametrize("query,field", [("roi=%C3", "roi"), ("roi=%ED%A0%80", "roi"), ("r%FFoi=1", "r%FFoi"),
                                         ("study=%FF%FE", "study")])
def test_bytes_that_are_not_utf8_get_400_naming_the_argument(orthanc, query, field):
    r = orthanc.get(f"/rt/measurements?{query}")
    assert r.status_code == 400, r.text
    assert r.json()["field"] == field


def test_health_reports_the_values_in_use(orthanc, rt_stack):
    health = orthanc.get("/rt/health").json()
    assert health["settings"]["orthanc_url"] == rt_stack.orthanc_url  # not the default port 8042
    assert "mcsquare_threads" not in health["settings"]  # the plugin runs no Monte Carlo: each worker says
    [worker] = health["checks"]["workers"]["workers"]
    assert worker["settings"]["orthanc_url"] == rt_stack.orthanc_url
    assert worker["settings"]["mcsquare_threads"] == rt_stack.mcsquare_threads
    assert worker["settings"]["work_dir"] == str(rt_stack.data_dir / "jobs")
