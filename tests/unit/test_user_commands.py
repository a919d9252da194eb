"""The launcher's user commands (orthanc_rt.ops.commands) against a real HTTP server with canned answers:
a bad command line is exit 2 with the command's usage line, a refusal is exit 1 with the server's message,
a followed job prints its progress and its result.
"""
from __future__ import annotations

import subprocess

import pytest

from orthanc_rt.ops import cli, stack
from tests.support.canned_http import Canned, canned_server

PLAN_ID = "0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d"
DOSE_ROUTE = ("POST", f"/rt/instances/{PLAN_ID}/dose")


def _job(state: str, progress: float, stage: str = "", **extra) -> dict:
    return {"id": "dose-7", "kind": "dose", "state": state, "stage": stage, "progress": progress,
            "eta_seconds": None, "message": "", "outputs": {}, **extra}


@pytest.mark.parametrize("argv, complaint", [
    (["dose", PLAN_ID, "--primaris", "5"], "unrecognized arguments: --primaris"),
    (["dose"], "required: rtplan-instance-id"),
    (["plan", "1.2.3", "--prescription", "2"], "required: --target"),
    (["jobs", "--state", "done"], "invalid choice: 'done'"),
    (["dose", PLAN_ID, "--primaries", "many"], "invalid int value"),
])
def test_a_bad_command_line_is_exit_2_with_the_commands_usage(argv, complaint, capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main(argv)
    err = capsys.readouterr().err
    assert caught.value.code == 2
    assert err.startswith(f"usage: ./orthanc-rt {argv[0]} ") and complaint in err


def test_the_launcher_script_refuses_an_unknown_option_with_the_usage_line():
    run = subprocess.run([str(stack.PROJECT_DIR / "orthanc-rt"), "jobs", "--colour"], capture_output=True,
                         text=True, timeout=60, cwd=stack.PROJECT_DIR)
    assert run.returncode == 2 and run.stderr.startswith("usage: ./orthanc-rt jobs "), run.stderr
    assert "unrecognized arguments: --colour" in run.stderr


def test_a_refusal_is_exit_1_with_the_servers_message(capsys):
    message = f"instance {PLAN_ID} is a CT Image Storage; the proton-dose workflow needs an RT Ion Plan"
    with canned_server({DOSE_ROUTE: Canned({"error": message, "status": 400}, 400)}) as server:
        code = cli.main(["dose", PLAN_ID, "--url", server.url])
    err = capsys.readouterr().err
    assert code == 1
    assert message in err and "HTTP 400" in err


def test_nothing_listening_is_exit_1_saying_so(capsys):
    from tests.support.services import free_port

    assert cli.main(["jobs", "--url", f"http://127.0.0.1:{free_port()}"]) == 1
    assert "unreachable" in capsys.readouterr().err


def test_dose_follows_the_job_and_prints_its_rtdose(capsys):
    answers = [_job("running", 0.2, "Monte Carlo"), _job("running", 0.6, "Monte Carlo"),
               _job("succeeded", 1.0, "done", outputs={"rtdose": {"orthanc_id": "0f-1e", "sop_instance_uid": "1.2.9"}})]
    with canned_server({DOSE_ROUTE: {"created": True, "job": _job("queued", 0.0)},
                        ("GET", "/rt/jobs/dose-7"): answers}) as server:
        code = cli.main(["dose", PLAN_ID, "--primaries", "20000", "--url", server.url, "--user", "dora",
                         "--password", "pw"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert server.requests[0].body == {"primaries": 20000}
    assert "dose job dose-7 (new)" in captured.out and "RTDOSE 0f-1e (SOPInstanceUID 1.2.9)" in captured.out
    # Not a terminal: one line per change of stage, no progress bar redraws.
    assert "dose: running Monte Carlo (20 %)" in captured.err and "dose: succeeded (100 %)" in captured.err


def test_dose_with_let_and_rbe_asks_for_them_and_prints_every_object(capsys):
    outputs = {"rtdose": {"orthanc_id": "0f-1e", "sop_instance_uid": "1.2.9"},
               "letmap": {"orthanc_id": "1a-2b", "sop_instance_uid": "1.2.10"},
               "rtdose-effective": {"orthanc_id": "3c-4d", "sop_instance_uid": "1.2.11"}}
    with canned_server({DOSE_ROUTE: {"created": True, "job": _job("queued", 0.0)},
                        ("GET", "/rt/jobs/dose-7"): [_job("succeeded", 1.0, "done", outputs=outputs)]}) as server:
        code = cli.main(["dose", PLAN_ID, "--let", "--rbe-model", "mcnamara", "--alpha-beta", "3", "--url",
                         server.url, "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    assert server.requests[0].body == {"let": True, "rbe_model": "mcnamara", "alpha_beta_gy": 3.0}
    assert "LETd map: " in out and "uuid=1a-2b" in out and "RBE-weighted RTDOSE: " in out and "uuid=3c-4d" in out


def test_a_failed_job_is_exit_1_with_its_message(capsys):
    failed = _job("failed", 0.4, "failed", message="CT series 1.2.840.9 never arrived")
    with canned_server({DOSE_ROUTE: {"created": False, "job": _job("queued", 0.0)},
                        ("GET", "/rt/jobs/dose-7"): failed}) as server:
        code = cli.main(["dose", PLAN_ID, "--url", server.url, "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1 and "CT series 1.2.840.9 never arrived" in captured.err


def test_jobs_prints_a_table(capsys):
    page = {"items": [_job("running", 0.25, "beamlets", updated_at="2026-11-29T10:00:00+00:00")], "total": 3,
            "limit": 1, "offset": 0}
    with canned_server({("GET", "/rt/jobs"): page}) as server:
        assert cli.main(["jobs", "--state", "running", "--limit", "1", "--url", server.url]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["id", "kind", "state", "stage", "progress", "updated"]
    assert out[1].split() == ["dose-7", "dose", "running", "beamlets", "25", "%", "2026-11-29T10:00:00+00:00"]
    assert out[-1] == "1 of 3 jobs"
    assert server.requests[0].query["state"] == ["running"]


def test_measurements_csv_goes_to_stdout_or_a_file(tmp_path, capsys):
    csv = b"id,source,roi_name\r\n1,dvh,PTV\r\n2,dvh,Body\r\n"
    with canned_server({("GET", "/rt/measurements"): Canned(csv, 200, "text/csv")}) as server:
        assert cli.main(["measurements", "--study", "1.2.3", "--csv", "--url", server.url]) == 0
        assert capsys.readouterr().out == csv.decode()
        target = tmp_path / "m.csv"
        assert cli.main(["measurements", "--csv", "-o", str(target), "--url", server.url]) == 0
    assert target.read_bytes() == csv
    assert "2 rows written" in capsys.readouterr().err
    assert server.requests[0].query == {"study": ["1.2.3"], "format": ["csv"]}
