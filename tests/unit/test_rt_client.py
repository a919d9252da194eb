"""orthanc_rt.client against a real HTTP server with canned answers (tests/support/canned_http.py):
every 4xx/5xx becomes RtApiError with the server's own message, no answer is RtApiUnreachable, and
wait_job reports progress and raises for a job that did not succeed.
"""
from __future__ import annotations

import base64

import pytest

from orthanc_rt.client.api import RtClient
from orthanc_rt.errors import RtApiError, RtApiUnreachable, RtJobError
from orthanc_rt.records.jobs import MAX_ATTEMPTS_AFTER_OUTAGES
from tests.support.canned_http import Canned, canned_server
from tests.support.services import free_port


def _job(state: str, progress: float, stage: str = "", message: str = "", **extra) -> dict:
    return {"id": "dose-1", "kind": "dose", "state": state, "stage": stage, "progress": progress,
            "eta_seconds": None, "message": message, "outputs": {}, **extra}


@pytest.mark.parametrize("status", [400, 403, 404, 409, 422, 500, 503])
def test_every_error_status_carries_the_servers_message_and_the_route(status):
    message = f"primaries: must be at least 100 (answer {status})"
    with canned_server({("POST", "/rt/instances/0a-1b/dose"):
                        Canned({"error": message, "status": status, "field": "primaries"}, status)}) as server:
        with pytest.raises(RtApiError) as caught:
            RtClient(server.url).request_dose("0a-1b", primaries=5)
    assert caught.value.status == status
    assert caught.value.message == message
    assert caught.value.route == "POST /rt/instances/0a-1b/dose"
    assert message in str(caught.value) and str(status) in str(caught.value)


def test_an_error_without_json_carries_its_text():
    with canned_server({("GET", "/rt/jobs"): Canned(b"Orthanc is shutting down", 500, "text/plain")}) as server:
        with pytest.raises(RtApiError) as caught:
            RtClient(server.url).jobs()
    assert (caught.value.status, caught.value.message) == (500, "Orthanc is shutting down")


def test_orthancs_own_401_without_a_body_says_the_credentials_were_refused():
    with canned_server({("GET", "/rt/jobs"): Canned(b"", 401, "text/plain")}) as server:
        with pytest.raises(RtApiError) as caught:
            RtClient(server.url, "vic", "wrong").jobs()
    assert caught.value.status == 401 and "credentials" in caught.value.message


def test_connection_refused_is_a_clear_error_of_the_same_type():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(RtApiUnreachable) as caught:
        RtClient(url).job("dose-1")
    assert isinstance(caught.value, RtApiError) and caught.value.status is None
    assert "unreachable" in caught.value.message and url in caught.value.message
    assert caught.value.route == "GET /rt/jobs/dose-1"


def test_requests_send_basic_auth_and_only_the_given_fields():
    with canned_server({("POST", "/rt/instances/0a-1b/dose"): {"created": True, "job": _job("queued", 0)},
                        ("POST", "/rt/plans"): {"id": "plan-1", "job": {"id": "plan-j"}},
                        ("POST", "/rt/doses/0c-1d/compare"): {"check_id": "check-1", "job": _job("queued", 0),
                                                              "links": {}}}) as server:
        client = RtClient(server.url, "phil", "pw")
        assert client.request_dose("0a-1b", primaries=20_000, crop_grid=False)["created"] is True
        client.request_plan("1.2.3", target_roi="PTV", prescription_gy=2.0, beam_count=None)
        client.request_check("0c-1d", with_dose="0e-1f", primaries=None, dose_percent=3.0)
    dose, plan, check = server.requests
    assert dose.body == {"primaries": 20_000, "crop_grid": False}
    assert dose.authorization == "Basic " + base64.b64encode(b"phil:pw").decode()
    assert plan.body == {"study": "1.2.3", "workflow": "proton-impt", "target_roi": "PTV", "prescription_gy": 2.0}
    assert check.body == {"with": "0e-1f", "dose_percent": 3.0}


def test_list_filters_are_query_parameters_and_csv_is_the_raw_export():
    csv = b"id,source,type\r\n1,dvh,dose_at_volume\r\n"
    with canned_server({("GET", "/rt/jobs"): {"items": [], "total": 0, "limit": 500, "offset": 0},
                        ("GET", "/rt/measurements"): Canned(csv, 200, "text/csv")}) as server:
        client = RtClient(server.url)
        client.jobs(state="failed", kind="dose", limit=500)
        assert client.measurements_csv(study="1.2.3", roi="PTV", limit=None) == csv
    jobs, measurements = server.requests
    assert jobs.query == {"state": ["failed"], "kind": ["dose"], "limit": ["500"], "offset": ["0"]}
    assert measurements.query == {"study": ["1.2.3"], "roi": ["PTV"], "format": ["csv"]}


def test_wait_job_reports_increasing_progress_and_returns_the_final_job():
    answers = [_job("queued", 0.0), _job("running", 0.1, "Monte Carlo"), _job("running", 0.1, "Monte Carlo"),
               _job("running", 0.5, "Monte Carlo"), _job("running", 0.9, "storing RTDOSE"),
               _job("succeeded", 1.0, "done", outputs={"rtdose": {"orthanc_id": "0f-1a"}})]
    seen = []
    with canned_server({("GET", "/rt/jobs/dose-1"): answers}) as server:
        done = RtClient(server.url).wait_job("dose-1", on_progress=seen.append, poll_s=0.01, max_poll_s=0.02)
    assert done["state"] == "succeeded" and done["outputs"]["rtdose"]["orthanc_id"] == "0f-1a"
    progress = [job["progress"] for job in seen]
    assert progress == [0.0, 0.1, 0.5, 0.9, 1.0]  # once per change: the repeated answer is not reported
    assert len(server.requests) == len(answers)


@pytest.mark.parametrize("state", ["failed", "cancelled"])
def test_wait_job_raises_for_a_job_that_did_not_succeed(state):
    answers = [_job("running", 0.3, "Monte Carlo"),
               _job(state, 0.3, "failed", message="MCsquare exited with status 139")]
    with canned_server({("GET", "/rt/jobs/dose-1"): answers}) as server:
        with pytest.raises(RtJobError) as caught:
            RtClient(server.url).wait_job("dose-1", poll_s=0.01)
    assert isinstance(caught.value, RtApiError)
    assert caught.value.job["state"] == state
    assert "MCsquare exited with status 139" in caught.value.message and state in caught.value.message


def test_wait_job_waits_through_an_outage_failure_the_server_will_run_again():
    outage = _job("failed", 0.9, "failed: outage", message="Orthanc unavailable", attempts=1)
    answers = [_job("running", 0.9, "storing", attempts=1), outage, _job("queued", 0.0, "queued", attempts=1),
               _job("running", 0.5, "Monte Carlo", attempts=2), _job("succeeded", 1.0, "done", attempts=2)]
    with canned_server({("GET", "/rt/jobs/dose-1"): answers}) as server:
        assert RtClient(server.url).wait_job("dose-1", poll_s=0.01)["attempts"] == 2
    last_start = _job("failed", 0.9, "failed: outage", message="no worker ran it to its end in 8 starts",
                      attempts=MAX_ATTEMPTS_AFTER_OUTAGES)
    with canned_server({("GET", "/rt/jobs/dose-1"): [last_start]}) as server:
        with pytest.raises(RtJobError, match="in 8 starts"):
            RtClient(server.url).wait_job("dose-1", poll_s=0.01)


def test_wait_job_gives_up_after_its_timeout_with_the_last_state():
    with canned_server({("GET", "/rt/jobs/dose-1"): _job("running", 0.2, "beamlets")}) as server:
        with pytest.raises(RtJobError) as caught:
            RtClient(server.url).wait_job("dose-1", timeout_s=0.3, poll_s=0.05)
    assert caught.value.job["state"] == "running" and "after 0.3 s" in caught.value.message


def test_wait_plan_waits_for_the_plans_job_then_reads_the_plan():
    plan_running = {"id": "plan-1", "status": "running", "job": {"id": "plan-j"}}
    plan_done = {"id": "plan-1", "status": "succeeded", "job": {"id": "plan-j"},
                 "results": {"rtplan": {"orthanc_id": "0a"}, "rtdose": {"orthanc_id": "0b"}}}
    with canned_server({("GET", "/rt/plans/plan-1"): [plan_running, plan_done],
                        ("GET", "/rt/jobs/plan-j"): [_job("running", 0.5), _job("succeeded", 1.0)]}) as server:
        plan = RtClient(server.url).wait_plan("plan-1", timeout_s=10)
    assert plan["results"]["rtdose"]["orthanc_id"] == "0b"


def test_from_env_reads_the_client_variables_and_options_win():
    env = {"ORTHANC_RT_CLIENT_URL": "http://rt.example:8042/", "ORTHANC_RT_CLIENT_USER": "phil",
           "ORTHANC_RT_CLIENT_PASSWORD": "pw"}
    client = RtClient.from_env(env)
    assert client.base_url == "http://rt.example:8042" and client.http.session.auth == ("phil", "pw")
    assert RtClient.from_env(env, url="http://other:1", username="vic").http.session.auth == ("vic", "pw")
    # Nothing set: the Orthanc of this installation.
    assert RtClient.from_env({"ORTHANC_RT_HTTP_PORT": "9042"}).base_url == "http://127.0.0.1:9042"
