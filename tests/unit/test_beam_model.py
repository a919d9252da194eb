"""Which beam model (BDL) and CT calibration a worker simulates with.

OpenTPS keeps its own choice in a per-user file (~/openTPS_workspace/Config/DoseCalculationConfig.cfg) holding
absolute paths into the virtualenv that first ran it; after that virtualenv was removed, every worker of the next
installation on the machine failed to start a dose. Ours comes from ORTHANC_RT_BEAM_MODEL /
ORTHANC_RT_CT_CALIBRATION or the installed OpenTPS, whatever that file says.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from orthanc_rt.settings import PROJECT_DIR

_PRINT_MODEL = """
import json
from worker.engines.proton_dose import default_beam_model
try:
    m = default_beam_model()
    print(json.dumps({"bdl": m.bdl_path, "calibration": m.calibration_path, "energies": m.energy_range_mev}))
except Exception as e:
    print(json.dumps({"error": type(e).__name__, "message": str(e)}))
"""


def _beam_model_in_a_fresh_process(home: Path, **env: str) -> dict:
    """default_beam_model() of a worker process whose home is `home` (OpenTPS's per-user files live there)."""
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("ORTHANC_RT_")}
    run_env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), PYTHONPATH=str(PROJECT_DIR), **env)
    done = subprocess.run([sys.executable, "-c", _PRINT_MODEL], env=run_env, cwd=home, capture_output=True,
                          text=True, timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _stale_opentps_config(home: Path) -> None:
    """What a removed checkout's virtualenv leaves in the home folder."""
    config = home / "openTPS_workspace" / "Config"
    config.mkdir(parents=True)
    (config / "DoseCalculationConfig.cfg").write_text(
        "[MCsquare]\nbdlFile = /work/gone/.venv/opentps/BDL/BDL_default_DN_RangeShifter.txt\n"
        "scannerFolder = /work/gone/.venv/opentps/Scanners/UCL_Toshiba\n")


def test_a_stale_opentps_user_config_does_not_decide_the_beam_model(tmp_path):
    _stale_opentps_config(tmp_path)
    model = _beam_model_in_a_fresh_process(tmp_path)
    assert "error" not in model, model
    assert Path(model["bdl"]).is_file() and "/work/gone" not in model["bdl"]
    assert Path(model["bdl"]).name == "BDL_default_DN_RangeShifter.txt"
    assert Path(model["calibration"]).is_dir() and Path(model["calibration"]).name == "UCL_Toshiba"
    low, high = model["energies"]
    assert low < 100 < high  # a proton BDL, read


def test_the_configured_beam_model_is_the_one_used(tmp_path):
    shipped = _beam_model_in_a_fresh_process(tmp_path)
    clinic = tmp_path / "clinic"
    clinic.mkdir()
    bdl = Path(shutil.copy(shipped["bdl"], clinic / "Gantry1_BDL.txt"))
    calibration = Path(shutil.copytree(shipped["calibration"], clinic / "CT_scanner_A"))
    model = _beam_model_in_a_fresh_process(tmp_path, ORTHANC_RT_BEAM_MODEL=str(bdl),
                                           ORTHANC_RT_CT_CALIBRATION=str(calibration))
    assert model["bdl"] == str(bdl)
    assert model["calibration"] == str(calibration)


def test_a_missing_beam_model_is_named_when_the_worker_loads_it(tmp_path):
    model = _beam_model_in_a_fresh_process(tmp_path, ORTHANC_RT_BEAM_MODEL=str(tmp_path / "nowhere.txt"))
    assert model["error"] == "DoseEngineError"
    assert "nowhere.txt" in model["message"] and "ORTHANC_RT_BEAM_MODEL" in model["message"]
    model = _beam_model_in_a_fresh_process(tmp_path, ORTHANC_RT_CT_CALIBRATION=str(tmp_path / "no-scanner"))
    assert model["error"] == "DoseEngineError"
    assert "no-scanner" in model["message"] and "ORTHANC_RT_CT_CALIBRATION" in model["message"]
