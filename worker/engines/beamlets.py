"""Beamlets (dose per MU of every spot) by MCsquare, run in the caller's folder.

OpenTPS' `MCsquareDoseCalculator.computeBeamlets` has the traps described in
`worker.engines.mcsquare` (global workspace, 150 MB copy, unchecked exit code), so we
write the same beamlet-mode configuration into our own job folder and start
MCsquare with `worker.engines.mcsquare.run`.

MCsquare writes the beamlets as a sparse binary file (`Sparse_Dose.bin`,
described by `Sparse_Dose.txt`). OpenTPS' reader (`mcsquareIO.readBeamlets`)
unpacks it one float at a time in Python; `read_sparse_beamlets` reads the
same format walking only the run headers in Python and gathering the values
with numpy (SimpleFantom, 1564 spots, 4.8e6 non-zeros: 1.35 s against 2.6 s,
identical matrices), and builds the same matrix: rows are MCsquare's voxel indices (OpenTPS' convention:
an [x, y, z] image flipped along x and y, flattened in Fortran order), one
column per spot in the order the plan lists them (beam, layer, spot).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import scipy.sparse as sp
from opentps.core.data import SparseBeamlets
from opentps.core.data.images import CTImage
from opentps.core.data.plan import ProtonPlan

from orthanc_rt.errors import DoseEngineError
from worker.engines import mcsquare
from worker.engines.mcsquare import ProgressCallback, ScoringGrid
from worker.engines.proton_dose import GY_PER_EV_PER_G, BeamModel

# MCsquare's beamlet mode, as OpenTPS configures it for optimisation. The sparse threshold drops voxels
# below 2e4 eV/g per primary (about 1e-3 of a beamlet's peak), which keeps the matrix small.
_BEAMLET_CONFIG = {
    "Beamlet_Mode": True,
    "Beamlet_Parallelization": True,
    "Compute_stat_uncertainty": False,
    "Dose_MHD_Output": False,
    "Dose_Sparse_Output": True,
    "Dose_Sparse_Threshold": 20000.0,
    "Robustness_Mode": False,
}
_SPOT_HEADER = struct.Struct("<IIIff")  # non-zero voxels, beam id, layer id, x, y
_RUN_HEADER = struct.Struct("<II")  # voxels in this run, index of its first voxel


@dataclass(frozen=True)
class ScenarioErrors:
    """Systematic errors of MCsquare's reduced scenario set (see `compute_scenario_beamlets`)."""

    setup_mm: float
    range_pct: float


class BeamletRunner(Protocol):
    """How a planner gets its beamlets: `local_beamlets` here, or `worker.engines.beamlet_fanout` across workers.

    Returns the nominal beamlets and, with `errors`, those of every error
    scenario (else an empty list); columns follow the plan's spot order.
    """

    def __call__(self, ct: CTImage, plan: ProtonPlan, model: BeamModel, grid: ScoringGrid, *, primaries: int,
                 work_dir: Path, threads: int = 0, on_progress: ProgressCallback | None = None,
                 errors: ScenarioErrors | None = None) -> tuple[SparseBeamlets, list[SparseBeamlets]]: ...


def local_beamlets(ct: CTImage, plan: ProtonPlan, model: BeamModel, grid: ScoringGrid, *, primaries: int,
                   work_dir: Path, threads: int = 0, on_progress: ProgressCallback | None = None,
                   errors: ScenarioErrors | None = None) -> tuple[SparseBeamlets, list[SparseBeamlets]]:
    """The BeamletRunner of one process: one MCsquare run in `work_dir` for the whole plan."""
    if errors is None:
        return compute_beamlets(ct, plan, model, grid, primaries=primaries, work_dir=work_dir, threads=threads,
                                on_progress=on_progress), []
    return compute_scenario_beamlets(ct, plan, model, grid, setup_mm=errors.setup_mm, range_pct=errors.range_pct,
                                     primaries=primaries, work_dir=work_dir, threads=threads,
                                     on_progress=on_progress)


def compute_beamlets(ct: CTImage, plan: ProtonPlan, model: BeamModel, grid: ScoringGrid, *, primaries: int,
                     work_dir: Path, threads: int = 0, on_progress: ProgressCallback | None = None) -> SparseBeamlets:
    """Dose per MU (Gy, one fraction) of every spot of `plan` on `grid`, as OpenTPS SparseBeamlets.

    `primaries` is per spot. Everything is written below `work_dir`.
    """
    nominal, _ = _run(ct, plan, model, grid, primaries=primaries, work_dir=work_dir, threads=threads,
                      on_progress=on_progress, extra_config=_BEAMLET_CONFIG)
    return nominal


def compute_scenario_beamlets(ct: CTImage, plan: ProtonPlan, model: BeamModel, grid: ScoringGrid, *,
                              setup_mm: float, range_pct: float, primaries: int, work_dir: Path, threads: int = 0,
                              on_progress: ProgressCallback | None = None
                              ) -> tuple[SparseBeamlets, list[SparseBeamlets]]:
    """Nominal beamlets and those of MCsquare's reduced set of error scenarios, in one run.

    The scenarios shift the patient by +-`setup_mm` along each axis
    (systematic setup error, no random part) and scale the stopping powers by
    +-`range_pct` % (systematic range error): MCsquare's "ReducedSet", as
    OpenTPS' REDUCED_SET strategy configures it. Each scenario costs as much as
    the nominal beamlets.
    """
    config = dict(_BEAMLET_CONFIG, Robustness_Mode=True, Simulate_nominal_plan=True, Scenario_selection="ReducedSet",
                  Systematic_Setup_Error=[setup_mm / 10.0] * 3, Random_Setup_Error=[0.0, 0.0, 0.0],
                  Systematic_Range_Error=float(range_pct))
    return _run(ct, plan, model, grid, primaries=primaries, work_dir=work_dir, threads=threads,
                on_progress=on_progress, extra_config=config)


def _run(ct: CTImage, plan: ProtonPlan, model: BeamModel, grid: ScoringGrid, *, primaries: int, work_dir: Path,
         threads: int, on_progress: ProgressCallback | None, extra_config: dict
         ) -> tuple[SparseBeamlets, list[SparseBeamlets]]:
    if primaries < 1:
        raise ValueError(f"beamlet primaries must be positive, not {primaries}")
    folder = mcsquare.JobFolder.at(work_dir)
    # Beamlets are per MU: the plan file carries unit weights (restored afterwards; the caller owns the plan).
    weights = np.array(plan.spotMUs, dtype=np.float64)
    plan.spotMUs = np.ones_like(weights)
    try:
        mcsquare.write_inputs(folder, ct, plan, model.bdl, model.calibration, primaries=primaries, threads=threads,
                              scoring=grid, extra_config=extra_config)
    finally:
        plan.spotMUs = weights
    robust = bool(extra_config.get("Robustness_Mode"))
    header = folder.outputs / ("Sparse_Dose_Nominal.txt" if robust else "Sparse_Dose.txt")
    mcsquare.run(folder, on_progress=on_progress, expect=header)
    # Per primary (eV/g) to per MU (Gy): protons per MU of each spot's energy.
    per_mu = sp.diags(np.array([model.protons_per_mu(layer.nominalEnergy) * GY_PER_EV_PER_G
                                for beam in plan for layer in beam for _ in range(len(layer.spotMUs))],
                               dtype=np.float32))
    scenario_headers = sorted(folder.outputs.glob("Sparse_Dose_Scenario_*.txt"), key=_scenario_number) if robust \
        else []
    if robust and not scenario_headers:
        raise DoseEngineError(f"MCsquare wrote no error scenario beamlets; its last output lines:\n"
                              f"{mcsquare.tail(folder.log)}")
    matrices = [_sparse_beamlets(path, per_mu, grid, plan.numberOfSpots) for path in [header, *scenario_headers]]
    return matrices[0], matrices[1:]


def _scenario_number(path: Path) -> int:
    # Sparse_Dose_Scenario_<k>-<n>.txt
    return int(path.stem.rsplit("_", 1)[1].split("-")[0])


def _sparse_beamlets(header: Path, per_mu: sp.spmatrix, grid: ScoringGrid, spots: int) -> SparseBeamlets:
    matrix = read_sparse_beamlets(header)
    if matrix.shape != (int(np.prod(grid.size_xyz)), spots):
        raise DoseEngineError(f"MCsquare wrote a {matrix.shape} beamlet matrix for {spots} spots on a "
                              f"{grid.size_xyz} grid ({header.name})")
    return beamlets_on_grid(matrix @ per_mu, grid)


def beamlets_on_grid(matrix: sp.spmatrix, grid: ScoringGrid) -> SparseBeamlets:
    """A voxels x spots matrix (Gy per MU, MCsquare's voxel order) as OpenTPS SparseBeamlets on `grid`."""
    beamlets = SparseBeamlets()
    beamlets.setUnitaryBeamlets(sp.csc_matrix(matrix, dtype=np.float32))
    beamlets.doseOrigin = tuple(grid.origin_mm)
    beamlets.doseSpacing = tuple(grid.spacing_mm)
    beamlets.doseGridSize = tuple(grid.size_xyz)
    return beamlets


def read_sparse_beamlets(header_path: Path) -> sp.csc_matrix:
    """The voxels x spots matrix (eV/g per primary) of an MCsquare sparse beamlet output."""
    fields = _read_header(header_path)
    voxels = int(np.prod(fields["ImageSize"]))
    spots = int(fields["NbrSpots"])
    data = (header_path.parent / fields["BinaryFile"]).read_bytes()
    # Python walks only the headers (one per spot, one per run of contiguous voxels); the values are
    # gathered with numpy at the end. Every field is 4 bytes, so offsets are word indices times 4.
    offset = 0
    indptr = np.zeros(spots + 1, dtype=np.int64)
    starts: list[int] = []
    counts: list[int] = []
    firsts: list[int] = []
    try:
        for spot in range(spots):
            nonzero = _SPOT_HEADER.unpack_from(data, offset)[0]
            offset += _SPOT_HEADER.size
            read = 0
            while read < nonzero:
                count, first = _RUN_HEADER.unpack_from(data, offset)
                offset += _RUN_HEADER.size
                starts.append(offset // 4)
                counts.append(count)
                firsts.append(first)
                offset += 4 * count
                read += count
            indptr[spot + 1] = indptr[spot] + read
    except struct.error as exc:
        raise DoseEngineError(f"{header_path.name}: the beamlet file ends early ({exc})") from exc
    if offset > len(data):
        raise DoseEngineError(f"{header_path.name}: the beamlet file ends early")
    count = np.asarray(counts, dtype=np.int64)
    within = np.arange(int(count.sum()), dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)
    row = np.repeat(np.asarray(firsts, dtype=np.int64), count) + within
    words = np.frombuffer(data, dtype="<f4", count=len(data) // 4)
    value = words[np.repeat(np.asarray(starts, dtype=np.int64), count) + within].astype(np.float32)
    if row.size and row.max() >= voxels:
        raise DoseEngineError(f"{header_path.name}: a voxel index lies outside the {fields['ImageSize']} grid")
    return sp.csc_matrix((value, row, indptr), shape=(voxels, spots))


def _read_header(path: Path) -> dict:
    fields: dict = {}
    for line in path.read_text().splitlines():
        if "=" not in line or line.startswith("#"):
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        if key == "ImageSize":
            fields[key] = tuple(int(v) for v in value.split())
        elif key == "NbrSpots":
            fields[key] = int(value)
        elif key == "BinaryFile":
            fields[key] = value
    missing = {"ImageSize", "NbrSpots", "BinaryFile"} - set(fields)
    if missing:
        raise DoseEngineError(f"{path.name} lacks {', '.join(sorted(missing))}")
    return fields
