"""What integration tests share about the running stacks: their settings, users and an HTTP client."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from orthanc_rt.client.api import RtClient
from orthanc_rt.errors import RtJobError
from orthanc_rt.ops.stack import StackConfig
from orthanc_rt.pacs.client import orthanc_session
from orthanc_rt.records.jobs import FINAL_STATES
from tests.support.cases import small_phantom_case
from tests.support.senders import rest_upload

STACK_REDIS_URL = os.environ.get("ORTHANC_RT_TEST_STACK_REDIS", "redis://127.0.0.1:6379/14")


TEST_PRIMARIES = 20_000
# Dose checks recompute with more: at 2e4 primaries the Monte Carlo noise alone would fail a 3 %/2 mm gamma.
DOSE_CHECK = {"Primaries": 500_000, "WaitSeconds": 900}
# OrthancRT.Robustness of the test stack: one named protocol (tests/integration/test_robustness_pipeline.py).
ROBUSTNESS = {"Protocols": {"phantom": ["TargetVolume D95 >= 90 %", "External V1Gy <= 100 %"]}}


# One automatic planning rule, on an ROI name only tests/integration/test_planning.py uses.
AUTO_PLAN_ROI = "AUTOPLAN_PTV"


AUTO_PLANNING = {"Enabled": True,
                 "Protocols": {"test-1beam": {"prescription_gy": 2.0, "beam_count": 1, "beamlet_primaries": 500,
                                              "final_primaries": 100_000}},
                 "Rules": [{"Name": "autoplan-test", "TargetPattern": "AUTOPLAN_.*", "Workflow": "proton-impt",
                            "Protocol": "test-1beam"}]}


# The production configuration's users in tests: {name: (password, role)}; "nobody" has no role.
AUTH_USERS = {"ada": ("ada-pw-1", "admin"), "phil": ("phil-pw-2", "physicist"),
              "dora": ("dora-pw-3", "dosimetrist"), "vic": ("vic-pw-4", "viewer"), "nobody": ("nobody-pw-5", "")}


WORKER_USER = ("rt-worker", "worker-secret-6f1c")


# DICOM nodes the production stack knows: the TPS on this host, and a scanner elsewhere whose AE title an
# attacker on this host can claim (DicomCheckModalityHost must refuse it). 192.0.2.0/24 is TEST-NET-1.
KNOWN_AET, SPOOFED_AET, UNKNOWN_AET = "RT_TPS", "RT_SCANNER", "INTRUDER"


def dicom_modalities(tps_port: int) -> dict[str, dict[str, object]]:
    return {"tps": {"AET": KNOWN_AET, "Host": "127.0.0.1", "Port": tps_port},
            "scanner": {"AET": SPOOFED_AET, "Host": "192.0.2.10", "Port": 104}}


FAULT_JOB_TIMEOUT_S = 60


def as_user(cfg: StackConfig, user: str | None) -> "Client":
    auth = None if user is None else (user, AUTH_USERS[user][0])
    return Client(cfg.orthanc_url, auth=auth)


class Client:
    """requests against the stack's Orthanc, with the waits the tests need."""

    def __init__(self, base: str, auth: tuple[str, str] | None = None):
        self.base = base
        self.rt = RtClient(base, *(auth or ()))  # the /rt routes as users' scripts call them
        self.http = orthanc_session(auth)  # resends requests whose connection Orthanc dropped unanswered

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.http.get(self.base + path, timeout=30, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self.http.post(self.base + path, timeout=60, **kw)

    def put(self, path: str, **kw: Any) -> requests.Response:
        return self.http.put(self.base + path, timeout=30, **kw)

    def delete(self, path: str, **kw: Any) -> requests.Response:
        return self.http.delete(self.base + path, timeout=30, **kw)

    def jobs(self, **filters: Any) -> list[dict[str, Any]]:
        return self.rt.jobs(limit=500, **filters)["items"]

    def wait_job(self, predicate, *, timeout_s: float = 300, **filters: Any) -> dict[str, Any]:
        """Poll /rt/jobs until a job matching `predicate` exists; returns it."""
        deadline = time.monotonic() + timeout_s
        seen: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            seen = self.jobs(**filters)
            for job in seen:
                if predicate(job):
                    return job
            time.sleep(0.5)
        raise AssertionError(f"no job matched within {timeout_s} s; jobs seen: {seen}")

    def wait_final(self, job_id: str, *, timeout_s: float = 300) -> dict[str, Any]:
        """The job once it ended, however it ended (tests assert on failed and cancelled ones too)."""
        try:
            return self.rt.wait_job(job_id, timeout_s=timeout_s, poll_s=0.5, max_poll_s=0.5)
        except RtJobError as exc:
            if exc.job.get("state") in FINAL_STATES:
                return exc.job
            raise AssertionError(f"job {job_id} not final after {timeout_s} s: {exc.job}") from None

    def study_instances(self, study_uid: str, modality: str) -> list[str]:
        found = self.post("/tools/find", json={"Level": "Instance", "Query": {
            "StudyInstanceUID": study_uid, "Modality": modality}}).json()
        return found


def mcsquare_running(data_dir: Path) -> bool:
    """An MCsquare process working in one of this stack's job folders (other stacks may run their own)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if b"MCsquare" in (proc / "cmdline").read_bytes() and \
                    Path(os.readlink(proc / "cwd")).is_relative_to(data_dir):
                return True
        except OSError:
            continue
    return False


def succeeded_dose_job(cfg: StackConfig, name: str, reader: str) -> dict[str, Any]:
    """A small phantom case uploaded by the dosimetrist of AUTH_USERS; its dose job once it succeeded,
    waited for as `reader`."""
    case = small_phantom_case(name)
    rest_upload(cfg.orthanc_url, [*case.ct, case.rtstruct, case.plan], auth=("dora", AUTH_USERS["dora"][0]))
    job = as_user(cfg, reader).wait_job(lambda j: j["state"] in ("succeeded", "failed"),
                                        study=case.study.study_instance_uid, kind="dose")
    assert job["state"] == "succeeded", job["message"]
    return job


def wait_for_orthanc(client: "Client", cfg: StackConfig, timeout_s: float = 30) -> None:
    """Until Orthanc answers /system after a (re)start; fails with the tail of its log if it exits or stays silent."""
    from orthanc_rt.ops import stack

    def log_tail() -> str:
        log = cfg.log_dir / "orthanc.log"
        return log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)"

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not stack.is_running(cfg, "orthanc"):
            pytest.fail(f"Orthanc exited:\n{log_tail()}")
        try:
            if client.get("/system").status_code == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    pytest.fail(f"Orthanc did not answer within {timeout_s:.0f} s of its start:\n{log_tail()}")
