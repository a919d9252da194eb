"""A MCsquare run that dies of SIGSEGV is run once more; a second crash, or any other failure, fails the job.

The engine here is a stand-in executable that crashes the way MCsquare does
(a real SIGSEGV, on the runs a counter file names) and otherwise writes the
dose file: what is tested is the runner's handling of a crashed process, not
physics (the physics tests run the real MCsquare).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from orthanc_rt.errors import DoseEngineError
from worker.engines import mcsquare

_ENGINE = """#!{python}
import os, signal, sys
from pathlib import Path
runs = Path("runs")
n = int(runs.read_text()) + 1 if runs.exists() else 1
runs.write_text(str(n))
print("Simulation started", flush=True)
if n in {crash_on}:
    os.kill(os.getpid(), signal.{sig})
Path("Outputs").mkdir(exist_ok=True)
Path("Outputs/Dose.mhd").write_text("dose of run " + str(n))
"""


def _engine(tmp_path: Path, monkeypatch, crash_on: set[int], sig: str = "SIGSEGV") -> mcsquare.JobFolder:
    binary = tmp_path / "MCsquare_stand_in"
    binary.write_text(_ENGINE.format(python=sys.executable, crash_on=crash_on, sig=sig))
    binary.chmod(0o755)
    monkeypatch.setattr(mcsquare, "mcsquare_binary", lambda: binary)
    folder = mcsquare.JobFolder.at(tmp_path / "job")
    folder.root.mkdir()
    folder.config.write_text("")
    return folder


def test_a_crash_is_run_again_and_its_output_discarded(tmp_path, monkeypatch, caplog):
    folder = _engine(tmp_path, monkeypatch, crash_on={1})
    mcsquare.run(folder)
    assert (folder.root / "runs").read_text() == "2"
    assert folder.dose.read_text() == "dose of run 2"
    assert "MCsquare crashed (killed by SIGSEGV) (run 1 of 2)" in caplog.text


def test_two_crashes_fail_with_the_signal(tmp_path, monkeypatch):
    folder = _engine(tmp_path, monkeypatch, crash_on={1, 2})
    with pytest.raises(DoseEngineError, match=r"exit code -11 \(killed by SIGSEGV\)"):
        mcsquare.run(folder)
    assert (folder.root / "runs").read_text() == str(mcsquare.CRASH_RUNS)


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM"])
def test_a_run_that_was_stopped_is_not_repeated(tmp_path, monkeypatch, sig):
    """SIGKILL is how cancellation and the time limit end MCsquare: running it again would defeat them."""
    folder = _engine(tmp_path, monkeypatch, crash_on={1}, sig=sig)
    with pytest.raises(DoseEngineError, match=f"killed by {sig}"):
        mcsquare.run(folder)
    assert (folder.root / "runs").read_text() == "1"
