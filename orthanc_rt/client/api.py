"""`RtClient`: Orthanc-RT's /rt routes from Python, for scripts, the launcher's user commands, the demo,
the benchmarks and the integration tests.

Requests go through `orthanc_rt.pacs.client.HttpOrthanc` (the HTTP client the
workers use: one session, resent when Orthanc drops a connection unanswered).
Every answer of 400 or more becomes `RtApiError` carrying the server's own
message (the `error` of /rt's JSON errors, else the answer's text); no answer
at all becomes `RtApiUnreachable`; `wait_job` raises `RtJobError` for a job
that failed, was cancelled or did not end in time. All three are `RtApiError`.

    client = RtClient("http://127.0.0.1:8042", "phil", "secret")
    job = client.request_dose(plan_id, primaries=200_000)["job"]
    done = client.wait_job(job["id"], on_progress=lambda j: print(j["stage"], j["progress"]))
    print(done["outputs"]["rtdose"]["orthanc_id"])
"""
from __future__ import annotations

import time
from typing import Any, Callable, Mapping

import requests

from orthanc_rt.client.results import (
    Check,
    CheckRequest,
    Job,
    JobRequest,
    MeasurementPage,
    Page,
    Plan,
    RobustnessRequest,
)
from orthanc_rt.errors import OrthancUnavailable, RtApiError, RtApiUnreachable, RtJobError
from orthanc_rt.pacs.client import HttpOrthanc
from orthanc_rt.records.jobs import FAILED, FINAL_STATES, MAX_ATTEMPTS_AFTER_OUTAGES, SUCCEEDED, TRANSIENT_FAILURE
from orthanc_rt.settings import from_environment, local_orthanc_url

ProgressCallback = Callable[[Job], None]


class RtClient:
    """The /rt routes of one Orthanc-RT, with HTTP basic authentication (Orthanc's registered users)."""

    def __init__(self, base_url: str, username: str = "", password: str = "", *, timeout_s: float = 60.0):
        self.http = HttpOrthanc(base_url, username, password, timeout_s=timeout_s)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, url: str | None = None, username: str | None = None,
                 password: str | None = None, **kwargs: Any) -> "RtClient":
        """The Orthanc-RT named by ORTHANC_RT_CLIENT_URL (else ORTHANC_RT_ORTHANC_URL, else this host at
        ORTHANC_RT_HTTP_PORT), logged in as ORTHANC_RT_CLIENT_USER / ORTHANC_RT_CLIENT_PASSWORD; `url`,
        `username` and `password`, when given, win over the variables (the commands' options)."""
        url = url or (from_environment("client_url", env) or from_environment("orthanc_url", env)
                      or local_orthanc_url(from_environment("http_port", env)))
        username = from_environment("client_user", env) if username is None else username
        password = from_environment("client_password", env) if password is None else password
        return cls(url, username, password, **kwargs)

    @property
    def base_url(self) -> str:
        return self.http.base_url

    # --- jobs -------------------------------------------------------------------------------------------------

    def jobs(self, *, state: str | None = None, kind: str | None = None, study: str | None = None,
             limit: int = 50, offset: int = 0) -> Page[Job]:
        """GET /rt/jobs: newest first; `study` a StudyInstanceUID or Orthanc study id; `limit` at most 500."""
        return self._json("GET", "/rt/jobs", params=_given(state=state, kind=kind, study=study, limit=limit,
                                                           offset=offset))

    def job(self, job_id: str) -> Job:
        """GET /rt/jobs/{id}: state, stage, progress, outputs and history."""
        return self._json("GET", f"/rt/jobs/{job_id}")

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        """DELETE /rt/jobs/{id}: a queued job is dequeued, a running one stopped (409: it had already ended)."""
        return self._json("DELETE", f"/rt/jobs/{job_id}")

    def wait_job(self, job_id: str, *, on_progress: ProgressCallback | None = None, timeout_s: float | None = None,
                 poll_s: float = 0.5, max_poll_s: float = 5.0) -> Job:
        """Poll the job until it ends; the succeeded job, else RtJobError (failed, cancelled, timed out).

        `on_progress(job)` is called with the first answer and with every one whose state, stage or progress
        changed. The poll interval starts at `poll_s` and grows by half up to `max_poll_s` while nothing
        changes (a Monte Carlo run can sit in one stage for minutes), back to `poll_s` when something does.
        A job an outage failed (stage "failed: outage") is not final while the server will run it again
        (within about 10 s, up to 8 starts): the wait goes on.
        """
        route = f"GET /rt/jobs/{job_id}"
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        delay, seen = poll_s, None
        while True:
            job = self.job(job_id)
            now = (job.get("state"), job.get("stage"), job.get("progress"))
            if now != seen:
                if on_progress is not None:
                    on_progress(job)
                delay, seen = poll_s, now
            else:
                delay = min(delay * 1.5, max_poll_s)
            if job["state"] in FINAL_STATES and not _rerun_by_the_server(job):
                if job["state"] != SUCCEEDED:
                    raise RtJobError(f"job {job_id} {job['state']}: {job.get('message') or job.get('stage')}",
                                     route, job)
                return job
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RtJobError(f"job {job_id} still {job['state']} ({job.get('stage')}) after {timeout_s:g} s",
                                     route, job)
                delay = min(delay, left)
            time.sleep(delay)

    # --- doses, analyses, checks ------------------------------------------------------------------------------

    def request_dose(self, plan_instance_id: str, *, primaries: int | None = None,
                     scoring_spacing_mm: float | None = None, wait_for_ct_seconds: int | None = None,
                     restrict_to_body: bool | None = None, crop_grid: bool | None = None, let: bool | None = None,
                     rbe_model: str | None = None, alpha_beta_gy: float | None = None,
                     alpha_beta_by_roi: dict[str, float] | None = None) -> JobRequest:
        """POST /rt/instances/{id}/dose: the dose of a stored RT Ion Plan (Orthanc instance id); parameters left
        out take the server's defaults. The same plan and parameters give the same job (`created` False).
        `let` adds the LETd Parametric Map, `rbe_model` an RBE-weighted RTDOSE (docs/physics.md#let)."""
        body = _given(primaries=primaries, scoring_spacing_mm=scoring_spacing_mm,
                      wait_for_ct_seconds=wait_for_ct_seconds, restrict_to_body=restrict_to_body, crop_grid=crop_grid,
                      let=let, rbe_model=rbe_model, alpha_beta_gy=alpha_beta_gy, alpha_beta_by_roi=alpha_beta_by_roi)
        return self._json("POST", f"/rt/instances/{plan_instance_id}/dose", json=body)

    def request_robustness(self, plan_instance_id: str, *, setup_error_mm: float | None = None,
                           range_error_pct: float | None = None, scenarios: str | dict[str, int] | None = None,
                           primaries: int | None = None, goals: list[str | dict[str, Any]] | None = None,
                           protocol: str | None = None) -> RobustnessRequest:
        """POST /rt/instances/{id}/robustness: a stored RT Ion Plan in error scenarios (docs/robustness.md);
        parameters left out take the server's defaults. The job's outputs hold the goals' worst cases."""
        body = _given(setup_error_mm=setup_error_mm, range_error_pct=range_error_pct, scenarios=scenarios,
                      primaries=primaries, goals=goals, protocol=protocol)
        return self._json("POST", f"/rt/instances/{plan_instance_id}/robustness", json=body)

    def dvh_bands(self, plan_instance_id: str, job_id: str) -> dict[str, Any]:
        """GET /rt/instances/{id}/robustness/{job}/dvh-bands: per ROI the nominal DVH and the scenarios' band."""
        return self._json("GET", f"/rt/instances/{plan_instance_id}/robustness/{job_id}/dvh-bands")

    def request_analysis(self, dose_instance_id: str, structure_set_id: str) -> JobRequest:
        """POST /rt/instances/{id}/analysis: DVH metrics of a stored RTDOSE with an RTSTRUCT (Orthanc ids)."""
        return self._json("POST", f"/rt/instances/{dose_instance_id}/analysis",
                          json={"structure_set": structure_set_id})

    def request_check(self, dose: str, *, with_dose: str | None = None, **parameters: Any) -> CheckRequest:
        """POST /rt/doses/{dose}/compare: check an RTDOSE against its recomputed plan, or against `with_dose`;
        `parameters` are the route's (dose_percent, distance_mm, primaries, ...; None ones left out). The
        check's id is its job's."""
        body = _given(with_=with_dose, **parameters)
        return self._json("POST", f"/rt/doses/{dose}/compare", json=body)

    def check(self, check_id: str) -> Check:
        """GET /rt/checks/{id}: verdict, pass rates, per-ROI table (verdict None while it runs)."""
        return self._json("GET", f"/rt/checks/{check_id}")

    # --- plans ------------------------------------------------------------------------------------------------

    def request_plan(self, study: str, *, target_roi: str, workflow: str = "proton-impt",
                     structure_set: str | None = None, ct_series: str | None = None, **parameters: Any) -> Plan:
        """POST /rt/plans: plan `target_roi` of a study (Orthanc id or StudyInstanceUID). `parameters` are the
        workflow's (prescription_gy, beam_count, gantry_angles_deg, final_primaries, ...: GET /rt/workflows),
        None ones left out; the same request on the same inputs gives the same plan."""
        body = {"study": study, "workflow": workflow, "target_roi": target_roi,
                **_given(structure_set=structure_set, ct_series=ct_series, **parameters)}
        return self._json("POST", "/rt/plans", json=body)

    def plan(self, plan_id: str) -> Plan:
        """GET /rt/plans/{id}: request, status, job, QA summary, the stored RTPLAN and RTDOSE."""
        return self._json("GET", f"/rt/plans/{plan_id}")

    def plans(self, *, study: str | None = None, status: str | None = None, workflow: str | None = None,
              limit: int = 50, offset: int = 0) -> Page[Plan]:
        """GET /rt/plans: newest first."""
        return self._json("GET", "/rt/plans", params=_given(study=study, status=status, workflow=workflow,
                                                            limit=limit, offset=offset))

    def wait_plan(self, plan_id: str, *, on_progress: ProgressCallback | None = None,
                  timeout_s: float | None = None) -> Plan:
        """Wait for the plan's job (as `wait_job`), then the plan with its results and QA."""
        job = (self.plan(plan_id).get("job") or {})
        if not job.get("id"):
            raise RtApiError(None, f"plan {plan_id} has no job", f"GET /rt/plans/{plan_id}")
        self.wait_job(job["id"], on_progress=on_progress, timeout_s=timeout_s)
        return self.plan(plan_id)

    # --- measurements -----------------------------------------------------------------------------------------

    def measurements(self, **filters: Any) -> MeasurementPage:
        """GET /rt/measurements: `filters` are the route's (study, series, roi, type, metric, source, dose, job,
        sort, limit, offset); None values are left out."""
        return self._json("GET", "/rt/measurements", params=_given(**filters))

    def measurements_csv(self, **filters: Any) -> bytes:
        """GET /rt/measurements?format=csv: the export (UTF-8, fixed columns); `limit` up to 100000."""
        return self._call("GET", "/rt/measurements", params={**_given(**filters), "format": "csv"}).content

    # --- system -----------------------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """GET /rt/health (RtApiError with status 503 when something is down)."""
        return self._json("GET", "/rt/health")

    # --- the one place answers become values or errors ----------------------------------------------------------

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._call(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise RtApiError(response.status_code, f"the answer is not JSON: {response.text[:200]!r}",
                             f"{method} {path}") from None

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        route = f"{method} {path}"
        try:
            response = self.http.response(method, path, **kwargs)
        except OrthancUnavailable as exc:
            raise RtApiUnreachable(str(exc), route) from None
        if response.status_code >= 400:
            raise RtApiError(response.status_code, _server_message(response), route)
        return response


def _server_message(response: requests.Response) -> str:
    """What the server said: the `error` of /rt's JSON errors, else its text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("error"):
        return str(body["error"])
    text = response.text.strip()
    if text:
        return text[:500]
    if response.status_code == 401:  # Orthanc's own refusal, before Orthanc-RT sees the request: no body
        return "Orthanc refused the credentials (401 Unauthorized): give a registered user and its password"
    return response.reason or f"HTTP {response.status_code}"


def _given(**values: Any) -> dict[str, Any]:
    """The values that were given (None: let the server choose); a trailing _ is dropped (`with_` -> with)."""
    return {name.rstrip("_"): value for name, value in values.items() if value is not None}


def _rerun_by_the_server(job: Mapping[str, Any]) -> bool:
    """A job failed by an outage that the plugin's maintenance runs again (Scheduler.rerun_after_outages)."""
    return job.get("state") == FAILED and job.get("stage") == TRANSIENT_FAILURE \
        and int(job.get("attempts") or 0) < MAX_ATTEMPTS_AFTER_OUTAGES
