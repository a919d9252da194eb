"""Run MCsquare for one job inside a folder that belongs to that job alone.

Why a folder per job, and why we start MCsquare ourselves
---------------------------------------------------------
OpenTPS' `MCsquareDoseCalculator` simulates in one global folder
(`~/openTPS_workspace/Simulations/MCsquare_simulation`) and copies about
150 MB of MCsquare binaries into it on every run. Two jobs on one host would
overwrite each other's inputs and outputs, and changing `simulationDirectory`
after the calculator is built leaves `_doseFilePath` pointing at the global
folder: a run can then silently return the dose of an earlier job. It also
starts MCsquare through a shell launcher and never looks at its exit code.

So the dose engine does not use the calculator. OpenTPS' own writers
(`mcsquareIO`) put every input into the caller's `work_dir`, and this module
starts the installed binary from the package folder with `cwd=work_dir` and
`MCsquare_Materials_Dir=<work_dir>/Materials`. Every path MCsquare reads or
writes, and the one Dose.mhd we read back, is below `work_dir`; the caller
creates it and removes it afterwards (about 16 MB of material tables plus the
CT per job, instead of 150 MB of binaries).

Layout of a job folder::

    CT.mhd/.raw  PlanPencil.txt  bdl.txt  config.txt  mcsquare.log
    Scanner/     HU_Density_Conversion.txt, HU_Material_Conversion.txt
    Materials/   material tables + list.dat (numbering matches Scanner/)
    Outputs/     Dose.mhd/.raw, Simulation_progress.txt (written by MCsquare)

Process handling: MCsquare stays in the worker's process group, so when RQ
kills the job's group on cancel or timeout MCsquare dies with it, and it gets
PR_SET_PDEATHSIG=SIGKILL so it never outlives the worker process.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import opentps.core.processing.doseCalculation.protons.MCsquare as _mcsquare_package
from opentps.core.data.CTCalibrations import AbstractCTCalibration
from opentps.core.data.images import CTImage, DoseImage
from opentps.core.data.MCsquare import BDL, MCsquareConfig
from opentps.core.data.plan import ProtonPlan
from opentps.core.io import mcsquareIO

from orthanc_rt.analysis.let import LET_DOSE_THRESHOLD_FRACTION
from orthanc_rt.errors import DoseEngineError
from worker.engines.child_process import describe_signal as _describe_signal
from worker.engines.child_process import die_with_parent as _die_with_parent
from worker.engines.child_process import tail

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[float, str], None]

_POLL_SECONDS = 0.5
_RESTATE_SECONDS = 10.0
# MCsquare prints " 40.0 % " and " 50.0 % (stat uncertainty: 3.63 %) " per batch.
_PROGRESS_LINE = re.compile(r"^\s*(\d+(?:\.\d+)?) %", re.MULTILINE)
# The uncertainty it reached, from the 5th of its 10 batches on (Compute_stat_uncertainty, on by default).
_UNCERTAINTY_LINE = re.compile(r"\(stat uncertainty: (\d+(?:\.\d+)?) %\)")
# What that number is, from MCsquare's Process_batch (MCsquare 1.x, as opentps-core 2.0.0 ships it).
STAT_UNCERTAINTY_DEFINITION = (
    "MCsquare's batch estimate: the relative standard deviation of the mean dose over its 10 batches, "
    "averaged over the voxels above 50 % of the maximum dose (voxels below 0.1 g/cm3 ignored)")
# In beamlet mode it prints "Simulation of beamlet 3/1564" as each spot starts (in any order when parallel).
_BEAMLET_LINE = re.compile(r"^Simulation of beamlet \d+/(\d+)", re.MULTILINE)


@dataclass(frozen=True)
class ScoringGrid:
    """An axis-aligned dose grid in DICOM patient coordinates (mm, x/y/z order)."""

    origin_mm: tuple[float, float, float]  # centre of the first voxel
    spacing_mm: tuple[float, float, float]
    size_xyz: tuple[int, int, int]


@dataclass(frozen=True)
class JobFolder:
    """Where each MCsquare input and output of one job lives."""

    root: Path

    @classmethod
    def at(cls, work_dir: Path) -> "JobFolder":
        # Absolute: OpenTPS' MHD reader joins a relative data-file path twice.
        return cls(Path(work_dir).resolve())

    @property
    def ct(self) -> Path:
        return self.root / "CT.mhd"

    @property
    def plan(self) -> Path:
        return self.root / "PlanPencil.txt"

    @property
    def bdl(self) -> Path:
        return self.root / "bdl.txt"

    @property
    def config(self) -> Path:
        return self.root / "config.txt"

    @property
    def scanner(self) -> Path:
        return self.root / "Scanner"

    @property
    def materials(self) -> Path:
        return self.root / "Materials"

    @property
    def outputs(self) -> Path:
        return self.root / "Outputs"

    @property
    def dose(self) -> Path:
        return self.outputs / "Dose.mhd"

    @property
    def let(self) -> Path:
        return self.outputs / "LET.mhd"

    @property
    def log(self) -> Path:
        return self.root / "mcsquare.log"


def write_inputs(folder: JobFolder, ct: CTImage, plan: ProtonPlan, beam_model: BDL,
                 calibration: AbstractCTCalibration, *, primaries: int, threads: int,
                 scoring: ScoringGrid | None, extra_config: dict | None = None, let: bool = False,
                 density_scale: float = 1.0) -> None:
    """Write everything MCsquare reads into the job folder, removing any earlier output.

    `extra_config` entries override the dose configuration (the beamlet mode of
    `worker.engines.beamlets` sets its own output keys this way). `let` adds MCsquare's LETd output.
    `density_scale` multiplies every density of the HU-to-density table, and so every stopping power per
    length: ranges scale by 1 / `density_scale` (a range-error scenario, worker.engines.scenario_dose).
    """
    folder.root.mkdir(parents=True, exist_ok=True)
    # A reused folder must not hand an earlier job's files to this run (or to the checks below).
    for stale in (folder.outputs, folder.scanner, folder.materials):
        if stale.exists():
            shutil.rmtree(stale)
    for stale in (folder.ct, folder.ct.with_suffix(".raw"), folder.plan, folder.bdl, folder.config, folder.log):
        stale.unlink(missing_ok=True)
    folder.scanner.mkdir()
    folder.materials.mkdir()
    mcsquareIO.writeCT(ct, str(folder.ct))
    mcsquareIO.writePlan(plan, str(folder.plan), ct, beam_model)
    if not folder.plan.is_file():  # writePlan only logs (and writes nothing) for plans it cannot express
        raise DoseEngineError("OpenTPS did not write the MCsquare plan file (see the worker log)")
    mcsquareIO.writeCTCalibrationAndBDL(calibration, str(folder.scanner), str(folder.materials),
                                        beam_model, str(folder.bdl))
    if density_scale != 1.0:
        scale_densities(folder.scanner / "HU_Density_Conversion.txt", density_scale)
    config = _config(folder, primaries=primaries, threads=threads, scoring=scoring, let=let)
    for key, value in (extra_config or {}).items():
        config[key] = value
    mcsquareIO.writeConfig(config, str(folder.config))


def scale_densities(table: Path, factor: float) -> None:
    """Multiply the density column of MCsquare's HU-to-density table (lines "HU density"; # comments)."""
    if not factor > 0:
        raise ValueError(f"density scale must be positive, not {factor}")
    lines = []
    for line in table.read_text().splitlines():
        fields = line.split()
        if len(fields) == 2 and not line.lstrip().startswith("#"):
            line = f"{fields[0]} {float(fields[1]) * factor:.6g}"
        lines.append(line)
    table.write_text("\n".join(lines) + "\n")


# The MCsquare build opentps-core 2.0.0 ships now and then dies of SIGSEGV part-way through a run (seen here
# twice in full test runs, at 5e8 and 1e6 primaries, each run fine when repeated): a crash is run once more
# before it fails the job. A run we stop (cancellation, time limit) ends by SIGKILL and is never repeated.
_CRASH_SIGNALS = (signal.SIGSEGV, signal.SIGBUS)
CRASH_RUNS = 2


def run(folder: JobFolder, *, on_progress: ProgressCallback | None = None, expect: Path | None = None) -> None:
    """Run MCsquare on the job folder's config; raise DoseEngineError unless it wrote `expect` (default: the dose)."""
    expected = folder.dose if expect is None else expect
    binary = mcsquare_binary()
    for attempt in range(1, CRASH_RUNS + 1):
        returncode = _run_once(binary, folder, on_progress)
        crashed = returncode < 0 and -returncode in _CRASH_SIGNALS
        if not crashed or attempt == CRASH_RUNS:
            break
        logger.warning("MCsquare crashed%s (run %d of %d); running it again. Its last output lines:\n%s",
                       _describe_signal(returncode), attempt, CRASH_RUNS, tail(folder.log))
        shutil.rmtree(folder.outputs, ignore_errors=True)  # nothing of the crashed run may pass for a result
    if returncode != 0:
        raise DoseEngineError(f"MCsquare ({binary.name}) failed with exit code {returncode}"
                              f"{_describe_signal(returncode)}; its last output lines:\n{tail(folder.log)}")
    if not expected.is_file():
        raise DoseEngineError(f"MCsquare ({binary.name}) exited normally but wrote no {expected.name}; "
                              f"its last output lines:\n{tail(folder.log)}")


def _run_once(binary: Path, folder: JobFolder, on_progress: ProgressCallback | None) -> int:
    env = dict(os.environ, MCsquare_Materials_Dir=str(folder.materials))
    started = time.monotonic()
    with open(folder.log, "wb") as log:
        # No start_new_session: RQ cancels a job by killing its process group, which must include MCsquare.
        process = subprocess.Popen([str(binary), folder.config.name], cwd=folder.root, env=env,
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   preexec_fn=_die_with_parent(os.getpid()))
        try:
            _wait(process, folder.log, on_progress)
        finally:
            if process.poll() is None:  # we are being interrupted: do not leave MCsquare running
                process.kill()
                process.wait()
    logger.info("MCsquare finished in %.1f s (exit code %s)", time.monotonic() - started, process.returncode)
    return process.returncode


def read_dose(folder: JobFolder, expected: ScoringGrid) -> DoseImage:
    """The dose MCsquare wrote in this folder, per primary proton (eV/g), DICOM axes [x, y, z]."""
    dose = mcsquareIO.readDose(str(folder.dose))
    got = tuple(int(n) for n in dose.imageArray.shape)
    if got != tuple(expected.size_xyz):
        raise DoseEngineError(f"MCsquare wrote a {got} dose, expected {tuple(expected.size_xyz)}")
    if not np.allclose(dose.origin, expected.origin_mm, atol=1e-3):
        raise DoseEngineError(f"MCsquare's dose origin {tuple(dose.origin)} is not the requested "
                              f"{tuple(expected.origin_mm)}")
    # MCsquare exits 0 with an empty (or NaN) dose when no proton reaches the CT, e.g. with an unreadable
    # beam model or a plan whose spots all miss the image: never hand that on as a result.
    if not np.all(np.isfinite(dose.imageArray)) or not np.any(dose.imageArray > 0):
        raise DoseEngineError("MCsquare scored no dose (are the isocentre and spots inside the CT? is the beam "
                              f"model readable?); its last output lines:\n{tail(folder.log)}")
    return dose


def read_let(folder: JobFolder, expected: ScoringGrid, dose: np.ndarray) -> np.ndarray:
    """The dose-averaged LET MCsquare scored in this folder (`LET_MHD_Output`), keV/µm, DICOM axes [x, y, z].

    MCsquare scores LETd on the dose grid (its `LET_Calculation_Method` StopPow: each energy deposit weighted
    by the stopping power in water of the particle depositing it, divided by the dose) and writes 0 where no
    dose was scored. MCsquare leaves tiny negative values in a few voxels with next to no dose (`dose`, its own,
    [x, y, z]): seen -7e-4 keV/µm in 3 of 11,648 voxels of zero dose, and -1.8e-4 keV/µm in one voxel with
    3e-4 of the maximum dose. Those are set to 0; a negative value where the dose reaches 1 % of its maximum
    (LET_DOSE_THRESHOLD_FRACTION), or a non-finite one where there is dose, fails the run.
    The unit is keV/µm: a 100 MeV beam's entrance reads about 1.5, the value PSTAR's stopping power of the
    primaries (0.73) raised by the secondaries (docs/physics.md#let).
    """
    if not folder.let.is_file():
        raise DoseEngineError(f"MCsquare wrote no {folder.let.name} although LET scoring was asked for; "
                              f"its last output lines:\n{tail(folder.log)}")
    let = mcsquareIO.readMCsquareMHD(str(folder.let)).imageArray
    got = tuple(int(n) for n in let.shape)
    if got != tuple(expected.size_xyz):
        raise DoseEngineError(f"MCsquare wrote a {got} LET, expected {tuple(expected.size_xyz)}")
    dose = np.asarray(dose)
    let = np.where(dose > 0, let, 0.0)
    meaningful = dose >= LET_DOSE_THRESHOLD_FRACTION * float(dose.max())
    if not np.all(np.isfinite(let)) or np.any(let[meaningful] < 0):
        raise DoseEngineError("MCsquare's LET is negative or not finite where it scored dose "
                              f"({int(np.sum(~np.isfinite(let)))} non-finite, {int(np.sum(let[meaningful] < 0))} "
                              "negative voxels at 1 % of the maximum dose or more)")
    if np.any(let < 0):
        logger.info("MCsquare's LET: %d voxels of low dose with negative LETd (down to %.2g keV/µm) set to 0",
                    int(np.sum(let < 0)), float(let.min()))
    return np.asarray(np.maximum(let, 0.0), dtype=np.float32)


def mcsquare_binary(cpuinfo: Path = Path("/proc/cpuinfo")) -> Path:
    """The MCsquare build for this CPU, chosen as the package's launcher script does."""
    folder = Path(_mcsquare_package.__path__[0])
    text = cpuinfo.read_text(errors="replace") if cpuinfo.exists() else ""
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    if "AuthenticAMD" in text:
        name = "MCsquare_linux"  # the launcher never starts the vector builds on AMD processors
    elif any(flag.startswith("avx512") for flag in flags):
        name = "MCsquare_linux_avx512"
    elif "avx2" in flags:
        name = "MCsquare_linux_avx2"
    elif "avx" in flags:
        name = "MCsquare_linux_avx"
    elif any(flag.startswith("sse4") for flag in flags):
        name = "MCsquare_linux_sse4"
    else:
        name = "MCsquare_linux"
    binary = folder / name
    if not os.access(binary, os.X_OK):
        raise DoseEngineError(f"{binary} is missing or not executable: run scripts/fix_opentps.py after installing")
    return binary


def progress_from_log(text: str) -> float | None:
    """MCsquare's own completion (0..1) from its output so far, or None before the first batch or beamlet."""
    # Whole lines only: its output reaches the log in blocks, and a cut "6945" read as "69" claimed every spot done.
    text = text[:text.rfind("\n") + 1]
    beamlets = _BEAMLET_LINE.findall(text)
    if beamlets:
        return min(len(beamlets) / max(int(beamlets[-1]), 1), 1.0)
    found = _PROGRESS_LINE.findall(text)
    return min(float(found[-1]) / 100.0, 1.0) if found else None


def stat_uncertainty_percent(folder: JobFolder) -> float | None:
    """The statistical uncertainty (%) MCsquare reported at the end of the run in `folder`
    (STAT_UNCERTAINTY_DEFINITION); None when its log has none (no log, or a run of beamlets)."""
    if not folder.log.is_file():
        return None
    found = _UNCERTAINTY_LINE.findall(folder.log.read_text(errors="replace"))
    return float(found[-1]) if found else None


def _config(folder: JobFolder, *, primaries: int, threads: int, scoring: ScoringGrid | None,
            let: bool = False) -> MCsquareConfig:
    # Paths relative to the job folder (MCsquare's cwd): its config parser splits on whitespace.
    config = MCsquareConfig()
    config["Num_Primaries"] = int(primaries)
    config["Num_Threads"] = int(threads)  # MCsquare ignores OMP_NUM_THREADS; 0 = every core it can see
    config["CT_File"] = folder.ct.name
    config["ScannerDirectory"] = folder.scanner.name
    config["HU_Density_Conversion_File"] = f"{folder.scanner.name}/HU_Density_Conversion.txt"
    config["HU_Material_Conversion_File"] = f"{folder.scanner.name}/HU_Material_Conversion.txt"
    config["BDL_Machine_Parameter_File"] = folder.bdl.name
    config["BDL_Plan_File"] = folder.plan.name
    config["Output_Directory"] = folder.outputs.name
    config["Dose_MHD_Output"] = True
    config["Dose_to_Water_conversion"] = "OnlineSPR"  # what OpenTPS uses for final doses: dose to water
    # MCsquare's default, stated: 10 batches instead of one run, so its log reports the uncertainty reached
    # (stat_uncertainty_percent); costs nothing measurable.
    config["Compute_stat_uncertainty"] = True
    # Dose-averaged LET on the dose grid, written as Outputs/LET.mhd (read_let). StopPow is MCsquare's
    # default method, stated: LET from the stopping power of the depositing particle, not deposit/step length.
    config["LET_MHD_Output"] = bool(let)
    config["LET_Calculation_Method"] = "StopPow"
    if scoring is not None:
        config["Independent_scoring_grid"] = True
        config["Scoring_voxel_spacing"] = [s / 10.0 for s in scoring.spacing_mm]  # cm
        config["Scoring_grid_size"] = list(scoring.size_xyz)
        config["Scoring_origin"] = [c / 10.0 for c in _mcsquare_corner(scoring)]  # cm
    return config


def _mcsquare_corner(grid: ScoringGrid) -> tuple[float, float, float]:
    """The grid's outer corner in MCsquare's frame, whose y axis is DICOM's -y (mm).

    The inverse of what `mcsquareIO.readMCsquareMHD` applies to the Dose.mhd
    offset, so the dose comes back at `grid.origin_mm`.
    """
    (ox, oy, oz), (sx, sy, sz), (_, ny, _) = grid.origin_mm, grid.spacing_mm, grid.size_xyz
    return (ox - sx / 2.0, -oy - sy * ny + sy / 2.0, oz - sz / 2.0)


def _wait(process: subprocess.Popen, log: Path, on_progress: ProgressCallback | None) -> None:
    reported = -1.0
    last_call = time.monotonic()
    while True:
        try:
            process.wait(timeout=_POLL_SECONDS)
            return
        except subprocess.TimeoutExpired:
            pass
        if on_progress is None:
            continue
        done = progress_from_log(log.read_text(errors="replace")) if log.exists() else None
        if done is not None and done > reported:
            reported = done
            last_call = time.monotonic()
            on_progress(done, f"{done:.0%} of primaries simulated")
        elif reported >= 0 and time.monotonic() - last_call >= _RESTATE_SECONDS:
            # No news is news too: said again, the job's ETA grows instead of freezing (worker.jobs.progress).
            last_call = time.monotonic()
            on_progress(reported, f"{reported:.0%} of primaries simulated")
