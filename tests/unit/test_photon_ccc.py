"""`orthanc_rt.planning.ccc_engine`: the availability probe against the installed engine and against broken copies.

The failing cases copy the real engine and its kernels into a folder laid out
like opentps.core and break one thing each (run bit, a kernel file); the
probe runs the copied engine itself. About 0.2 s per probe that gets as far as
running the engine.
"""
from __future__ import annotations

import importlib.util
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from orthanc_rt.planning import ccc_engine as photon_ccc

pytestmark = pytest.mark.skipif(photon_ccc.opentps_core_root() is None, reason="opentps-core is not installed")


def _copy_engine(root: Path, *, executable: bool = True) -> photon_ccc.CccEngine:
    """A folder laid out like opentps.core with a copy of the installed engine and its 6 MV kernels."""
    installed = photon_ccc.locate()
    copy = photon_ccc.locate(root)
    copy.binary.parent.mkdir(parents=True)
    shutil.copyfile(installed.binary, copy.binary)  # copyfile: no mode bits
    if executable:
        copy.binary.chmod(0o755)
    shutil.copytree(installed.kernels, copy.kernels)
    return copy


def test_installed_engine_is_available():
    state = photon_ccc.status()
    assert state["available"] is True, state["reason"]
    assert state["binary"].endswith("CCC_DoseEngine/CCC_DoseEngine")
    assert state["kernels"].endswith(photon_ccc.DEFAULT_KERNELS)
    assert "ran a test beamlet" in state["reason"]


def test_status_does_not_import_opentps():
    # The plugin asks for the status inside Orthanc, where importing OpenTPS would be slow and noisy.
    code = ("import sys; from orthanc_rt.planning import ccc_engine as photon_ccc; state = photon_ccc.status(); "
            "print(state['available'], sorted(m for m in sys.modules if m.startswith('opentps.')))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).parents[2])
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "True []"


def test_missing_install_names_the_missing_executable(tmp_path):
    state = photon_ccc.status(tmp_path)
    assert state["available"] is False
    assert state["reason"].startswith("the CCC engine executable ")
    assert str(tmp_path / photon_ccc.ENGINE_SUBPATH) in state["reason"]


def test_engine_without_run_bit_says_how_to_fix_it_and_the_cache_holds_until_refresh(tmp_path):
    engine = _copy_engine(tmp_path, executable=False)
    first = photon_ccc.status(tmp_path)
    assert first["available"] is False
    assert first["reason"] == (f"{engine.binary} is not executable (the wheel ships it without its run bit): "
                               "run scripts/fix_opentps.py")
    engine.binary.chmod(engine.binary.stat().st_mode | stat.S_IXUSR)
    assert photon_ccc.status(tmp_path) == first  # probed once per process
    assert photon_ccc.status(tmp_path, refresh=True)["available"] is True


def test_truncated_kernel_file_is_named_with_its_expected_size(tmp_path):
    engine = _copy_engine(tmp_path)
    primary = engine.kernels / "primary.bin"
    primary.write_bytes(primary.read_bytes()[:1000])
    state = photon_ccc.status(tmp_path)
    assert state["available"] is False
    assert state["reason"] == (f"CCC kernel file {primary} has 1000 bytes, expected 64512 for "
                               "24 radii x 48 angles x 14 energies")


def test_missing_kernel_file_is_named(tmp_path):
    engine = _copy_engine(tmp_path)
    (engine.kernels / "mu_en.bin").unlink()
    state = photon_ccc.status(tmp_path)
    assert (state["available"], state["reason"]) == (False, f"CCC kernel file {engine.kernels / 'mu_en.bin'} "
                                                             "is missing")


def test_damaged_engine_fails_the_test_run(tmp_path):
    # Present, executable, kernels fine: only running it finds that the executable is cut short.
    engine = _copy_engine(tmp_path)
    engine.binary.write_bytes(engine.binary.read_bytes()[:20_000])
    state = photon_ccc.probe(tmp_path)
    assert state["available"] is False
    assert state["reason"].startswith("CCC_DoseEngine failed a one-beamlet test (exit code -11, killed by SIGSEGV; "
                                      "expected 1)"), state["reason"]


def test_unknown_kernel_set_is_refused():
    with pytest.raises(ValueError, match="kernel set 'Kernels_18MV' is not one of Kernels_differentFluence"):
        photon_ccc.locate(kernels="Kernels_18MV")


def test_beamlet_spec_puts_iec_gantry_90_source_on_the_patient_left(tmp_path):
    # IEC 61217, head-first supine: at gantry 90 the source is at +x and the beam travels towards -x.
    path = tmp_path / "beamlets.txt"
    photon_ccc.write_beamlets(path, [photon_ccc.Beamlet(90.0, 10.0, -5.0, 5.0, 5.0)], first_number=7)
    lines = path.read_text().splitlines()
    assert lines[:2] == ["beamnum:", "1"]
    values = {lines[k]: lines[k + 1] for k in range(len(lines) - 1)}
    assert values["num"] == "7"
    assert [float(v) for v in values["SAD xp yp del_xp del_yp"].split()] == [100.0, 1.0, -0.5, 0.5, 0.5]
    # engine axes are (patient y, patient x, patient z), in cm
    assert np.allclose([float(v) for v in values["y_vec"].split()], [0.0, 100.0, 0.0], atol=1e-6)
    assert np.allclose([float(v) for v in values["kp"].split()], [0.0, -1.0, 0.0], atol=1e-6)
    assert np.allclose([float(v) for v in values["ip"].split()], [1.0, 0.0, 0.0], atol=1e-6)  # BEV X: patient +y
    assert np.allclose([float(v) for v in values["jp"].split()], [0.0, 0.0, 1.0], atol=1e-6)


def test_fix_opentps_gives_the_photon_engine_its_run_bit(tmp_path):
    spec = importlib.util.spec_from_file_location("fix_opentps", Path(__file__).parents[2] / "scripts/fix_opentps.py")
    fix_opentps = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fix_opentps)
    engine = _copy_engine(tmp_path, executable=False)
    source = engine.binary.parent / "calc_dose.cpp"
    source.write_text("/* source */\n")
    changed = fix_opentps.fix(tmp_path)
    assert changed == [engine.binary]
    assert engine.binary.stat().st_mode & stat.S_IXUSR
    assert not source.stat().st_mode & stat.S_IXUSR
