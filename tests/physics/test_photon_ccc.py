"""OpenTPS' CCC photon engine through our job-folder runner and planner: depth dose, geometry, planning, processes.

Every test runs the installed engine (nothing is mocked) on water phantoms
from `orthanc_rt.ops.phantom` of at most 22 x 105 x 22 voxels (the process
test starts a larger job and kills it at once). Costs on this shared 2-core
machine: the depth-dose test 3-8 s (16 beamlets of 1 cm on 2 mm depth
voxels), the two-beam plan 2-5 s (50 beamlets, ~24 L-BFGS-B iterations, plus
the same beamlets again for the round trip), the others about 1 s each; the
file 10-20 s depending on the load.

Reference data for 6 MV x-rays in water at SSD 100 cm: the depth of maximum
dose is about 1.5 cm and PDD(10 cm) about 67 % for a 10x10 cm² field,
falling with field size to about 61-62 % for 4x4 cm² (BJR Supplement 25,
"Central axis depth dose data for use in radiotherapy", 1996; Khan & Gibbons,
"The Physics of Radiation Therapy", 5th ed., ch. 9). The test uses a 4x4 cm²
field because the engine, as OpenTPS drives it, only follows each beamlet's
scatter within about 2 cm of its axis (terma_dose_masks.cpp: a cylinder of
the aperture's radius plus RSAFE = 2 cm): measured here, the central-axis
depth dose of a 10x10 cm² field is the same as that of a 4x4 cm² one
(PDD(10 cm) 61 %), so large fields lack scatter. OpenTPS' default kernel set
(Kernels_differentFluence) fails this test: dmax 18 mm, PDD(10 cm) 66.4 %
(see `orthanc_rt.planning.ccc_engine`).
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from orthanc_rt.dicom.photon_plan import build_photon_plan
from orthanc_rt.ops.phantom import water_phantom_case
from orthanc_rt.planning import ccc_engine as photon_ccc
from orthanc_rt.planning.request import Objective, PlanRequest

pytest.importorskip("opentps.core")
if not photon_ccc.status()["available"]:
    pytest.skip(f"CCC engine unavailable: {photon_ccc.status()['reason']}", allow_module_level=True)

from orthanc_rt.errors import PhotonEngineError
from worker.engines.ccc import DensityGrid, compute_beamlets
from worker.planning.photon import compute_plan_dose, density_grid, plan_photon  # noqa: E402

pytestmark = pytest.mark.physics
_PR_SET_CHILD_SUBREAPER = 36


def open_field(gantry_deg: float, side_mm: float, beamlet_mm: float) -> list[photon_ccc.Beamlet]:
    """A square open field at the isocentre plane, tiled with equal beamlets (equal weights = uniform fluence)."""
    centres = np.arange(-side_mm / 2 + beamlet_mm / 2, side_mm / 2, beamlet_mm)
    return [photon_ccc.Beamlet(gantry_deg, float(x), float(y), beamlet_mm, beamlet_mm)
            for x in centres for y in centres]


def field_dose(grid: DensityGrid, isocenter, beamlets, work_dir: Path, **kwargs) -> np.ndarray:
    matrix = compute_beamlets(grid, isocenter, beamlets, work_dir=work_dir, **kwargs)
    return np.asarray(matrix.sum(axis=1)).reshape(grid.density.shape)


def test_open_6mv_field_depth_dose_matches_reference_data(tmp_path):
    # 100 x 200 x 100 mm of water, 2 mm voxels along the beam; isocentre on the surface: SSD = SAD = 100 cm.
    case = water_phantom_case("ccc-pdd", size_mm=(100.0, 200.0, 100.0), spacing_mm=(5.0, 2.0, 5.0),
                              target_size_mm=10.0, energy_mev=100.0)
    grid = density_grid(case.ct_volume)
    surface_y = -100.0
    dose = field_dose(grid, (0.0, surface_y, 0.0), open_field(0.0, 40.0, 10.0), tmp_path, threads=2)
    nz, ny, nx = dose.shape
    # x = 0 and z = 0 fall between voxel centres: average the four voxels around the central axis.
    axis = dose[nz // 2 - 1:nz // 2 + 1, :, nx // 2 - 1:nx // 2 + 1].mean(axis=(0, 2))
    depth = grid.origin_mm[1] + grid.spacing_mm[1] * np.arange(ny) - surface_y
    peak = int(np.argmax(axis))
    pdd = 100.0 * axis / axis[peak]

    assert 12.0 <= depth[peak] <= 18.0, f"dmax {depth[peak]} mm"  # 6 MV: 15 mm (measured here: 14 mm)
    assert 58.0 <= np.interp(100.0, depth, pdd) <= 65.0  # 4x4 cm² 6 MV: ~61-62 % (measured here: 61.2 %)
    beyond = pdd[(depth > depth[peak] + 5.0) & (depth < 180.0)]
    assert np.all(np.diff(beyond) < 0), "the depth dose must fall beyond the build-up"
    assert pdd[(depth > 0) & (depth < 3.0)].max() < 80.0  # build-up: the first 3 mm are well below dmax


def test_iec_gantry_90_beam_enters_from_the_patient_left(tmp_path):
    case = water_phantom_case("ccc-g90", size_mm=(100.0, 60.0, 40.0), spacing_mm=5.0, target_size_mm=10.0,
                              target_depth_mm=30.0, energy_mev=100.0)
    grid = density_grid(case.ct_volume)
    dose = field_dose(grid, (0.0, 0.0, 0.0), open_field(90.0, 20.0, 10.0), tmp_path)
    nz, ny, nx = dose.shape
    along_x = dose[nz // 2, ny // 2, :]
    x = grid.origin_mm[0] + grid.spacing_mm[0] * np.arange(nx)
    inside = np.abs(x) < 45.0
    # IEC 61217, head-first supine: the source is at +x, so the dose falls from +x towards -x.
    assert np.all(np.diff(along_x[inside & (x < 30.0)]) > 0)
    assert along_x[inside][-1] > 1.3 * along_x[inside][0]


def test_threads_split_the_beamlets_without_changing_the_dose(tmp_path):
    case = water_phantom_case("ccc-threads", size_mm=(40.0, 60.0, 40.0), spacing_mm=5.0, target_size_mm=10.0,
                              target_depth_mm=30.0, energy_mev=100.0)
    grid = density_grid(case.ct_volume)
    beamlets = open_field(0.0, 20.0, 10.0) + open_field(90.0, 20.0, 10.0)
    one = compute_beamlets(grid, (0.0, 0.0, 0.0), beamlets, work_dir=tmp_path / "one", threads=1)
    three = compute_beamlets(grid, (0.0, 0.0, 0.0), beamlets, work_dir=tmp_path / "three", threads=3)
    assert sorted(p.name for p in (tmp_path / "one").glob("beamlets_*.txt")) == ["beamlets_0.txt"]
    assert len(list((tmp_path / "three").glob("beamlets_*.txt"))) == 3
    assert one.shape == (grid.density.size, 8) and one.nnz > 0
    assert abs(one - three).max() == 0.0


def test_two_beam_plan_covers_the_target_and_the_plan_gives_its_dose_again(tmp_path):
    case = water_phantom_case("ccc-plan", size_mm=(80.0, 100.0, 60.0), spacing_mm=4.0, target_size_mm=20.0,
                              target_depth_mm=50.0, energy_mev=100.0)
    structures = {"TargetVolume": case.target_mask, "External": case.external_mask}
    request = PlanRequest(target_roi="TargetVolume", prescription_gy=2.0, fractions=2,
                          gantry_angles_deg=(0.0, 90.0), max_iterations=200,
                          objectives=(Objective("TargetVolume", "DUniform", 2.0, 1.0),
                                      Objective("TargetVolume", "DMin", 2.0, 1.0),
                                      Objective("External", "DMax", 2.06, 0.5)))
    stages = []
    result = plan_photon(case.ct_volume, structures, request, work_dir=tmp_path / "plan", threads=2,
                         on_progress=lambda stage, fraction: stages.append(stage))

    target = result.qa["TargetVolume"]
    assert target["D95"] >= 0.95 * 2.0, target
    assert target["D5"] <= 1.07 * 2.0, target
    assert result.qa["External"]["Dmax"] <= 1.1 * 2.0
    assert list(dict.fromkeys(stages)) == ["building plan", "computing beamlets", "optimizing", "final dose"]
    assert [b.gantry_angle_deg for b in result.plan.beams] == [0.0, 90.0]
    assert all(b.beamlet_count > 0 and np.all(b.beamlet_weight >= 0) for b in result.plan.beams)
    assert 0 < result.beamlet_count == sum(int(np.count_nonzero(b.beamlet_weight)) for b in result.plan.beams)
    assert all(tuple(b.isocenter_mm) == pytest.approx(case.target_center_mm, abs=1.0) for b in result.plan.beams)
    assert result.optimizer.objective_final < result.optimizer.objective_initial
    # Nothing in OpenTPS' global workspace: every engine file is in the job folder.
    assert (tmp_path / "plan" / "beamlets" / "density.bin").is_file()

    again = compute_plan_dose(case.ct_volume, result.plan, work_dir=tmp_path / "again", threads=2)
    assert np.allclose(again.dose_gy, result.dose.dose_gy, rtol=1e-5, atol=1e-6)
    assert again.dose_gy.max() == pytest.approx(result.dose.dose_gy.max())

    # The optimised beamlets form bixel grids the RT Plan builder can sequence into MLC segments.
    plan = build_photon_plan(case.study, result.plan.beams, sop_instance_uid=result.plan.sop_instance_uid,
                             series_instance_uid=result.plan.series_instance_uid, label=result.plan.label,
                             fractions_planned=result.plan.fractions_planned, weight_unit=result.plan.weight_unit)
    for beam, item in zip(result.plan.beams, plan.BeamSequence):
        assert float(item.ControlPointSequence[0].GantryAngle) == beam.gantry_angle_deg
        assert float(item.FinalCumulativeMetersetWeight) >= beam.beamlet_weight.max() > 0


def test_plan_on_a_coarser_dose_grid_covers_the_target(tmp_path):
    case = water_phantom_case("ccc-coarse", size_mm=(80.0, 100.0, 60.0), spacing_mm=4.0, target_size_mm=24.0,
                              target_depth_mm=50.0, energy_mev=100.0)
    structures = {"TargetVolume": case.target_mask, "External": case.external_mask}
    request = PlanRequest(target_roi="TargetVolume", prescription_gy=2.0, gantry_angles_deg=(0.0, 90.0, 180.0),
                          scoring_spacing_mm=8.0)
    result = plan_photon(case.ct_volume, structures, request, work_dir=tmp_path / "plan", threads=2)
    assert result.dose.spacing_mm == (8.0, 8.0, 8.0)
    assert result.dose.dose_gy.shape == tuple(n // 2 for n in case.ct_volume.shape_zyx)
    assert 27 <= result.qa["TargetVolume"]["voxels"] <= 64  # 3 or 4 coarse voxel centres per axis in the 24 mm box
    assert result.qa["TargetVolume"]["D95"] >= 0.95 * 2.0
    again = compute_plan_dose(case.ct_volume, result.plan, work_dir=tmp_path / "again", scoring_spacing_mm=8.0)
    assert np.allclose(again.dose_gy, result.dose.dose_gy, rtol=1e-5, atol=1e-6)


def test_engine_failure_is_reported_with_its_output(tmp_path):
    installed = photon_ccc.locate()
    kernels = tmp_path / "kernels"
    kernels.mkdir()
    for source in installed.kernels.iterdir():
        data = source.read_bytes()
        (kernels / source.name).write_bytes(data[:1000] if source.name == "primary.bin" else data)
    broken = photon_ccc.CccEngine(binary=installed.binary, kernels=kernels)
    grid = DensityGrid(np.ones((5, 5, 5), np.float32), (-20.0, -20.0, -20.0), (10.0, 10.0, 10.0))
    with pytest.raises(PhotonEngineError, match=r"(?s)exit code 0 \(it exits with 1 when it succeeds\); its last "
                                                r"output lines:\n.*Failed at loading the kernels"):
        compute_beamlets(grid, (0.0, 0.0, 0.0), open_field(0.0, 10.0, 10.0), work_dir=tmp_path / "job",
                         engine=broken)


def test_engine_shares_the_worker_process_group_and_dies_with_it(tmp_path):
    """RQ cancels by killing the job's process group; a worker killed outright takes every engine along."""
    work_dir = tmp_path / "job"
    script = textwrap.dedent(f"""
        import numpy as np
        from pathlib import Path
        from orthanc_rt.planning.ccc_engine import Beamlet
        from worker.engines.ccc import DensityGrid, compute_beamlets
        grid = DensityGrid(np.ones((80, 120, 80), np.float32), (-158.0, -238.0, -158.0), (4.0, 4.0, 4.0))
        beamlets = [Beamlet(0.0, x, y, 5.0, 5.0) for x in range(-100, 100, 5) for y in range(-100, 100, 5)]
        compute_beamlets(grid, (0.0, 0.0, 0.0), beamlets, work_dir=Path({str(work_dir)!r}), threads=2)
    """)
    root = Path(__file__).resolve().parents[2]
    # Orphans come to us rather than to PID 1 (which may never reap them in a container): lets us reap the engines.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    engines: list[int] = []
    with open(tmp_path / "worker.out", "wb") as out:
        # Its own session, like an RQ work horse: the group we would kill holds only the worker.
        worker = subprocess.Popen([sys.executable, "-c", script], cwd=root, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True, env=dict(os.environ, MPLBACKEND="Agg"))
    try:
        engines = _wait_for_engines_in(work_dir, count=2, timeout=60.0)
        assert len(engines) == 2, (tmp_path / "worker.out").read_text()[-2000:]
        assert {os.getpgid(pid) for pid in engines} == {worker.pid}
        os.kill(worker.pid, signal.SIGKILL)  # only the worker: the engines must follow by PR_SET_PDEATHSIG
        worker.wait(timeout=10)
        deadline = time.monotonic() + 10.0
        while any(_alive(pid) for pid in engines) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in engines), "a CCC engine outlived its worker"
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        for pid in engines:
            if _alive(pid):  # only when the test failed: do not leave it running
                os.kill(pid, signal.SIGKILL)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:  # reaped elsewhere, or it was never reparented to us
                pass
        prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def _wait_for_engines_in(folder: Path, count: int, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    target = str(folder.resolve())
    found: list[int] = []
    while time.monotonic() < deadline and len(found) < count:
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if os.readlink(entry / "cwd") == target and os.readlink(entry / "exe").endswith("CCC_DoseEngine"):
                    found.append(int(entry.name))
            except OSError:
                continue
        time.sleep(0.05)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
