"""Photon beamlet doses from OpenTPS' CCC engine, run inside one job's folder.

OpenTPS' `CCCDoseCalculator` writes into its global workspace
(`~/openTPS_workspace/Simulations/CCC_simulation`, shared by every job on a
host), starts the engine through `sh` scripts and never looks at an exit
code, so this module does not use it. It writes the engine's inputs with
`orthanc_rt.planning.ccc_engine` into the caller's `work_dir`, starts the executable
itself with `cwd=work_dir` (every path it reads is relative to that folder),
checks how each run ended and reads the result back. The caller creates and
removes `work_dir`.

Layout of a job folder::

    kernels -> <opentps>/.../Kernels_differentFluence   kernels.txt
    geometry.txt  geometry_header.txt  density.bin
    beamlets_<k>.txt  dose_<k>.bin  ccc_<k>.log           one of each per engine process

Threads: the engine is single-threaded; `threads` engine processes run at
once, each on a contiguous share of the beamlets (0: one per CPU this
process may use). Processes stay in the worker's process group, so RQ's
cancel or timeout (which kills that group) stops them, and each gets
PR_SET_PDEATHSIG=SIGKILL so none outlives the worker.

Doses are in the engine's relative units per unit beamlet weight: the
optimiser's weights carry the scale (see `worker.planning.photon`).
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import scipy.sparse as sp

from orthanc_rt.errors import CccInputError, PhotonEngineError
from orthanc_rt.planning import ccc_engine as photon_ccc
from orthanc_rt.planning.ccc_engine import Beamlet
from worker.engines.child_process import describe_signal, die_with_parent, tail

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[float, str], None]
_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class DensityGrid:
    """Mass densities (g/cm3) on an axis-aligned grid in DICOM patient coordinates."""

    density: np.ndarray  # [z, y, x]
    origin_mm: tuple[float, float, float]  # centre of voxel [0, 0, 0]
    spacing_mm: tuple[float, float, float]  # x, y, z


def compute_beamlets(grid: DensityGrid, isocenter_mm: Sequence[float], beamlets: Sequence[Beamlet], *,
                     work_dir: Path, threads: int = 0, on_progress: ProgressCallback | None = None,
                     engine: photon_ccc.CccEngine | None = None) -> sp.csc_matrix:
    """Dose of each beamlet (columns, in the order given) at every voxel (rows: [z, y, x] C order).

    Raises PhotonEngineError when the engine is unavailable here, when a run
    fails, or when any beamlet comes back missing or failed.
    """
    if not beamlets:
        raise CccInputError("no beamlets to compute")
    if engine is None:
        state = photon_ccc.status()
        if not state["available"]:
            raise PhotonEngineError(f"the CCC photon engine is not usable here: {state['reason']}")
        engine = photon_ccc.locate()
    root = Path(work_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    _remove_earlier_outputs(root)
    kernel_list = photon_ccc.write_kernel_list(root, engine)
    geometry = photon_ccc.write_geometry(root, grid.density, grid.origin_mm, grid.spacing_mm, isocenter_mm)
    batches = _split(len(beamlets), process_count(threads))
    runs = []
    for k, (start, stop) in enumerate(batches):
        spec = root / f"beamlets_{k}.txt"
        photon_ccc.write_beamlets(spec, beamlets[start:stop], first_number=start)
        runs.append(_Run(k, start, stop, spec, root / f"dose_{k}.bin", root / f"ccc_{k}.log"))
    started = time.monotonic()
    _run_all(engine, root, kernel_list.name, geometry.name, runs, len(beamlets), on_progress)
    logger.info("CCC: %d beamlets in %d process(es) in %.1f s", len(beamlets), len(runs),
                time.monotonic() - started)
    columns = [_read(run, grid.density.shape) for run in runs]
    return sp.hstack(columns, format="csc", dtype=np.float32)


def process_count(threads: int) -> int:
    """Engine processes to run at once: `threads`, or one per CPU this process may use when 0."""
    if threads < 0:
        raise ValueError(f"threads must be 0 (all CPUs) or positive, not {threads}")
    return threads or len(os.sched_getaffinity(0))


@dataclass(frozen=True)
class _Run:
    index: int
    start: int  # first beamlet (global number)
    stop: int
    spec: Path
    output: Path
    log: Path


def _split(count: int, parts: int) -> list[tuple[int, int]]:
    parts = max(1, min(parts, count))
    edges = np.linspace(0, count, parts + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def _remove_earlier_outputs(root: Path) -> None:
    # A reused folder must not hand an earlier job's doses to this one.
    for pattern in ("beamlets_*.txt", "dose_*.bin", "ccc_*.log"):
        for stale in root.glob(pattern):
            stale.unlink()


def _command(engine: photon_ccc.CccEngine, kernel_list: str, geometry: str, run: _Run) -> list[str]:
    command = [str(engine.binary), kernel_list, geometry, run.spec.name, run.output.name]
    # Line-buffered stdout, so the per-beamlet lines (our progress) reach the log as they happen.
    stdbuf = shutil.which("stdbuf")
    return [stdbuf, "-oL", *command] if stdbuf else command


def _run_all(engine: photon_ccc.CccEngine, root: Path, kernel_list: str, geometry: str, runs: list[_Run],
             total: int, on_progress: ProgressCallback | None) -> None:
    processes: list[subprocess.Popen] = []
    logs = []
    try:
        for run in runs:
            log = open(run.log, "wb")
            logs.append(log)
            # No start_new_session: RQ cancels a job by killing its process group, which must include the engine.
            processes.append(subprocess.Popen(_command(engine, kernel_list, geometry, run), cwd=root,
                                              stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                              preexec_fn=die_with_parent(os.getpid())))
        reported = -1
        while any(p.poll() is None for p in processes):
            time.sleep(_POLL_SECONDS)
            if on_progress is not None:
                done = sum(_count(run.log, photon_ccc.DONE_BEAMLET_MARK) for run in runs)
                if done > reported:
                    reported = done
                    on_progress(min(done / total, 1.0), f"{done} of {total} beamlets")
    finally:
        for process in processes:
            if process.poll() is None:  # we are being interrupted: leave no engine running
                process.kill()
                process.wait()
        for log in logs:
            log.close()
    for run, process in zip(runs, processes):
        if process.returncode != photon_ccc.SUCCESS_EXIT_CODE:
            raise PhotonEngineError(f"the CCC engine failed on beamlets {run.start}-{run.stop - 1} with exit code "
                                    f"{process.returncode}{describe_signal(process.returncode)} (it exits with "
                                    f"{photon_ccc.SUCCESS_EXIT_CODE} when it succeeds); its last output lines:\n"
                                    f"{tail(run.log)}")
        if _count(run.log, photon_ccc.FAILED_BEAMLET_MARK):
            raise PhotonEngineError(f"the CCC engine could not compute some of beamlets {run.start}-{run.stop - 1}; "
                                    f"its last output lines:\n{tail(run.log)}")


def _count(log: Path, mark: str) -> int:
    try:
        return log.read_text(errors="replace").count(mark)
    except OSError:
        return 0


def _read(run: _Run, shape_zyx: tuple[int, int, int]) -> sp.csc_matrix:
    if not run.output.is_file():
        raise PhotonEngineError(f"the CCC engine exited normally but wrote no {run.output.name}; its last output "
                                f"lines:\n{tail(run.log)}")
    try:
        numbers, matrix = photon_ccc.read_beamlets(run.output, shape_zyx)
    except CccInputError as exc:
        raise PhotonEngineError(f"unreadable CCC output: {exc}") from None
    expected = np.arange(run.start, run.stop)
    if not np.array_equal(numbers, expected):
        raise PhotonEngineError(f"{run.output.name} holds beamlets {numbers.tolist()[:10]}..., expected "
                                f"{run.start}-{run.stop - 1}")
    return matrix
