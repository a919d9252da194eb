"""The launcher's user commands as users run them (`./orthanc-rt dose ...`, a subprocess) against the
production configuration's stack (authentication on, roles): a dose is computed and stored, a bad plan id
and a viewer's request exit 1 with the server's own message.
"""
from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from orthanc_rt.client.api import RtClient
from orthanc_rt.errors import RtApiError
from orthanc_rt.ops import stack
from tests.support.cases import small_phantom_case
from tests.support.senders import rest_upload
from tests.support.stack import AUTH_USERS

pytestmark = pytest.mark.integration

MISSING_PLAN = "0badc0de-0badc0de-0badc0de-0badc0de-0badc0de"
CLI_PRIMARIES = 10_000  # not the automatic dose's TEST_PRIMARIES: the command's own job, not the automatic one


def _launcher(cfg, *args: str, user: str | None = "dora") -> subprocess.CompletedProcess[str]:
    """`./orthanc-rt ARGS` reaching the stack through ORTHANC_RT_CLIENT_* (as a user's shell would set them)."""
    env = {**os.environ, "ORTHANC_RT_CLIENT_URL": cfg.orthanc_url}
    if user is not None:
        env.update(ORTHANC_RT_CLIENT_USER=user, ORTHANC_RT_CLIENT_PASSWORD=AUTH_USERS[user][0])
    return subprocess.run([str(stack.PROJECT_DIR / "orthanc-rt"), *args], env=env, cwd=stack.PROJECT_DIR,
                          capture_output=True, text=True, timeout=600)


def _client(cfg, user: str) -> RtClient:
    return RtClient(cfg.orthanc_url, user, AUTH_USERS[user][0])


@pytest.fixture(scope="module")
def stored_plan(auth_stack) -> tuple[str, str]:
    """A small phantom case stored by the dosimetrist: (the plan's Orthanc id, the StudyInstanceUID)."""
    case = small_phantom_case("cli-dose")
    ids = rest_upload(auth_stack.orthanc_url, [*case.ct, case.rtstruct, case.plan],
                      auth=("dora", AUTH_USERS["dora"][0]))
    return ids[-1], case.study.study_instance_uid


def test_a_bad_plan_id_exits_1_with_the_servers_message(auth_stack):
    with pytest.raises(RtApiError) as refused:
        _client(auth_stack, "dora").request_dose(MISSING_PLAN)
    run = _launcher(auth_stack, "dose", MISSING_PLAN)
    assert run.returncode == 1, run.stdout + run.stderr
    assert refused.value.status == 404 and refused.value.message in run.stderr
    assert f"HTTP {refused.value.status}" in run.stderr


def test_a_viewer_gets_the_403_message(auth_stack, stored_plan):
    plan_id, _ = stored_plan
    # The credentials as options this time (they win over ORTHANC_RT_CLIENT_*).
    run = _launcher(auth_stack, "dose", plan_id, "--user", "vic", "--password", AUTH_USERS["vic"][0], user=None)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "HTTP 403" in run.stderr and "role 'viewer' does not allow 'compute'" in run.stderr, run.stderr


def test_dose_command_stores_the_plans_rtdose(auth_stack, stored_plan):
    plan_id, study_uid = stored_plan
    run = _launcher(auth_stack, "dose", plan_id, "--primaries", str(CLI_PRIMARIES))
    assert run.returncode == 0, run.stdout + run.stderr
    job_id = re.search(r"^dose job (\S+) ", run.stdout, re.M).group(1)
    rtdose_id = re.search(r"succeeded: RTDOSE ([0-9a-f-]+) ", run.stdout).group(1)
    assert "dose: succeeded" in run.stderr  # progress lines (not a terminal: no bar)
    reader = _client(auth_stack, "vic")
    job = reader.job(job_id)
    assert job["state"] == "succeeded" and job["params"]["primaries"] == CLI_PRIMARIES
    assert job["inputs"]["plan"]["orthanc_id"] == plan_id and job["outputs"]["rtdose"]["orthanc_id"] == rtdose_id
    tags = reader.http.session.get(f"{auth_stack.orthanc_url}/instances/{rtdose_id}/simplified-tags",
                                   timeout=30).json()
    assert tags["Modality"] == "RTDOSE" and tags["StudyInstanceUID"] == study_uid
    listed = _launcher(auth_stack, "jobs", "--kind", "dose", "--study", study_uid, "--json", user="vic")
    assert listed.returncode == 0, listed.stderr
    assert job_id in [j["id"] for j in json.loads(listed.stdout)["items"]]
