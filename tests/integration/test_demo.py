"""The README's demo command, run as users run it (the launcher's CLI, default SQLite database), then stopped.

Only the Monte Carlo budget is smaller than the default (1000 protons per
spot, 5e5 for the final dose): about two minutes on the 2-core machine.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import requests

from orthanc_rt.ops import stack
from tests.support.services import REDIS_TEST_URL, free_port

pytestmark = pytest.mark.integration


def test_demo_plans_the_phantom_and_prints_where_to_look(tmp_path):
    env = {**os.environ, "ORTHANC_RT_DATA_DIR": str(tmp_path / "var"), "ORTHANC_RT_HTTP_PORT": str(free_port()),
           "ORTHANC_RT_DICOM_PORT": str(free_port()), "ORTHANC_RT_REDIS_URL": REDIS_TEST_URL,
           "ORTHANC_RT_VIEWER_PORT": "0", "ORTHANC_RT_STABLE_AGE": "2"}
    env.pop("ORTHANC_RT_DATABASE_URL", None)
    cli = [sys.executable, "-m", "orthanc_rt.ops.cli"]
    try:
        run = subprocess.run([*cli, "demo", "--beamlet-primaries", "1000", "--final-primaries", "500000",
                              "--timeout", "900"], env=env, cwd=stack.PROJECT_DIR, capture_output=True, text=True,
                             timeout=1200)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        out = run.stdout
        assert "The optimised RTPLAN and its RTDOSE are in Orthanc" in out
        d95 = float(re.search(r"TargetVolume:\s+D95 ([0-9.]+) Gy", out).group(1))
        assert 1.7 < d95 < 2.1, out  # 2 Gy prescription; few primaries (the demo's defaults give more)
        dose_id = re.search(r"RTDOSE:.*#instance\?uuid=([0-9a-f-]+)", out).group(1)
        base = f"http://127.0.0.1:{env['ORTHANC_RT_HTTP_PORT']}"
        tags = requests.get(f"{base}/instances/{dose_id}/simplified-tags", timeout=10).json()
        assert tags["Modality"] == "RTDOSE" and tags["DoseSummationType"] == "PLAN"
        assert (tmp_path / "var" / "orthanc-rt.sqlite").is_file()  # the default database
    finally:
        stopped = subprocess.run([*cli, "stop"], env=env, cwd=stack.PROJECT_DIR, capture_output=True, text=True,
                                 timeout=120)
    assert "orthanc" in stopped.stdout, stopped.stdout
