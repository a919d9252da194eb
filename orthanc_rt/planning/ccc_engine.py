"""OpenTPS' collapsed-cone convolution (CCC) photon engine: where it is, its file formats, and whether it runs here.

opentps-core 2.0.0 ships the engine (WiscPlan's CCC code, C++ sources
beside it) as one x86-64 Linux executable,
`processing/doseCalculation/photons/CCC_DoseEngine/CCC_DoseEngine`, without
its run bit (scripts/fix_opentps.py sets it), and two kernel sets beside
it: the same 14 mono-energetic kernels (0.2-6 MeV) weighted by two spectra.
OpenTPS' `CCCDoseCalculator` uses `Kernels_differentFluence`, whose spectrum
is harder (mean photon energy 2.64 MeV against 1.89 MeV): measured here, a
4x4 cm2 field at SSD 100 cm in water gives dmax 19 mm and PDD(10 cm) 65.6 %
with it, but dmax 15 mm and 60.2 % with `Kernels_6MV`, which is what 6 MV
beams give (tests/physics/test_photon_ccc.py cites the reference data). We
use `Kernels_6MV`. Plain Python: the plugin asks `status()` to describe the
`photon-ccc` workflow, so nothing here imports OpenTPS (the package is found
with importlib without being imported).

What the engine reads and writes, from its sources (parse_func.cpp,
convolution.cpp), in centimetres:

- argv: kernel list, geometry list, beamlet spec file, output file. Each list
  holds "marker" / "path" line pairs; paths are read with `fscanf("%s")` into
  200-byte buffers, so they may hold no whitespace and must stay short: the
  writers below use paths relative to the job folder (the engine's cwd).
- Geometry: a header (voxel counts, first voxel centre relative to the
  isocentre, voxel size) and float32 mass densities. The engine's grid axes
  are (patient y, patient x, patient z), its first axis fastest.
- Beamlets: per beamlet its number, SAD, aperture centre (xp, yp) and size at
  the isocentre plane, source position relative to the isocentre (y_vec),
  and the beam's-eye-view unit vectors ip, jp (aperture axes) and kp (the
  direction of travel), all in the engine's axes.
- Output: the beamlet count, then per beamlet its number, the grid size,
  the count of stored voxels, their linear indices (int32) and doses
  (float32, relative units). Voxels below 0.5 % of a beamlet's maximum are
  dropped by the engine.
- Exit code: 1 (its SUCCESS macro) when it ran, 0 on failure. A beamlet that
  fails is stored empty and reported on stdout, and the run still exits 1.
- Scatter reach: the engine scores each beamlet's dose only within a
  cylinder of the aperture's radius plus 2 cm (RSAFE in defs.h) around its
  axis, so a voxel gets no scatter from beamlets further away: the
  central-axis depth dose of a 10x10 cm2 field equals that of a 4x4 cm2 one
  (PDD(10 cm) 61 % here, where 6 MV beams give about 67 %).

Beam geometry follows IEC 61217 for a head-first-supine patient (as
`orthanc_rt.ops.phantom`): at gantry g, couch 0, the beam travels along
(-sin g, cos g, 0) in DICOM patient coordinates, the beam's-eye-view X axis
is (cos g, sin g, 0) and Y is +z. OpenTPS' own photon code turns the gantry
the other way (its angle t puts the source where IEC's -t does); callers of
OpenTPS' photon plan design must pass -g to get IEC angle g.
"""
from __future__ import annotations

import importlib.util
import logging
import math
import os
import platform
import signal
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from orthanc_rt.errors import CccInputError

logger = logging.getLogger(__name__)

ENGINE_SUBPATH = Path("processing/doseCalculation/photons/CCC_DoseEngine/CCC_DoseEngine")
KERNEL_SETS = ("Kernels_differentFluence", "Kernels_6MV")
DEFAULT_KERNELS = "Kernels_6MV"  # matches 6 MV depth doses; see the module docstring
_KERNELS_PARENT = Path("processing/doseCalculation/photons")
# The engine's kernel-list markers and the file each names in a kernel folder.
KERNEL_FILES = {
    "kernel_header": "kernel_header.txt", "kernel_radii": "radii.bin", "kernel_angles": "angles.bin",
    "kernel_energies": "energies.bin", "kernel_primary": "primary.bin", "kernel_first_scatter": "first_scatter.bin",
    "kernel_second_scatter": "second_scatter.bin", "kernel_multiple_scatter": "multiple_scatter.bin",
    "kernel_brem_annih": "brem_annih.bin", "kernel_total": "total.bin", "kernel_fluence": "fluence.bin",
    "kernel_mu": "mu.bin", "kernel_mu_en": "mu_en.bin",
}
_PER_ENERGY = ("energies.bin", "fluence.bin", "mu.bin", "mu_en.bin")
_PER_KERNEL = ("primary.bin", "first_scatter.bin", "second_scatter.bin", "multiple_scatter.bin", "brem_annih.bin",
               "total.bin")
SUCCESS_EXIT_CODE = 1  # the engine returns its SUCCESS macro (1); 0 means it failed
SAD_MM = 1000.0  # source-axis distance; OpenTPS' PhotonPlan uses the same
FAILED_BEAMLET_MARK = "Error in the calculation for beamlet"
DONE_BEAMLET_MARK = "Successfully calculated beamlet"
_PROBE_TIMEOUT_S = 30.0

# Names inside a job folder (relative: the engine runs with the job folder as its cwd).
KERNEL_LIST = "kernels.txt"
KERNEL_LINK = "kernels"
GEOMETRY_LIST = "geometry.txt"
GEOMETRY_HEADER = "geometry_header.txt"
DENSITY_FILE = "density.bin"


@dataclass(frozen=True)
class CccEngine:
    """The installed engine: its executable and one kernel folder."""

    binary: Path
    kernels: Path


@dataclass(frozen=True)
class Beamlet:
    """One pencil beamlet: a rectangle of the beam's-eye view at the isocentre plane (IEC gantry, couch 0)."""

    gantry_deg: float
    x_mm: float  # aperture centre along the beam's-eye-view X axis at the isocentre plane
    y_mm: float  # ... along Y (patient +z at couch 0)
    width_mm: float  # along X
    height_mm: float  # along Y


def opentps_core_root() -> Path | None:
    """The installed `opentps.core` package folder, found without importing it (importing logs and makes folders)."""
    try:
        spec = importlib.util.find_spec("opentps.core")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def locate(root: Path | None = None, kernels: str = DEFAULT_KERNELS) -> CccEngine:
    """Where the engine and kernel set `kernels` are below `root` (default: the installed opentps.core)."""
    if kernels not in KERNEL_SETS:
        raise ValueError(f"kernel set {kernels!r} is not one of {', '.join(KERNEL_SETS)}")
    root = opentps_core_root() if root is None else Path(root)
    if root is None:
        raise FileNotFoundError("opentps-core is not installed (no opentps.core package on the Python path)")
    return CccEngine(binary=root / ENGINE_SUBPATH, kernels=root / _KERNELS_PARENT / kernels)


# --- inputs ---------------------------------------------------------------------------------------------------------

def write_kernel_list(folder: Path, engine: CccEngine) -> Path:
    """The kernel list, naming the kernel files through a link in `folder` (short paths, whatever the install path)."""
    link = folder / KERNEL_LINK
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(engine.kernels.resolve(), target_is_directory=True)
    lines = [f"{marker}\n{KERNEL_LINK}/{name}\n" for marker, name in KERNEL_FILES.items()]
    path = folder / KERNEL_LIST
    path.write_text("".join(lines))
    return path


def write_geometry(folder: Path, density_zyx: np.ndarray, origin_mm: Sequence[float], spacing_mm: Sequence[float],
                   isocenter_mm: Sequence[float]) -> Path:
    """The geometry list, header and densities (g/cm3) of a [z, y, x] grid, placed relative to the isocentre."""
    density = np.asarray(density_zyx, dtype=np.float32)
    if density.ndim != 3 or min(density.shape) < 2:
        raise CccInputError(f"the density grid must be 3-D with at least 2 voxels per axis, not {density.shape}")
    if not np.all(np.isfinite(density)) or np.any(density < 0):
        raise CccInputError("densities must be finite and non-negative")
    if any(not (float(s) > 0) for s in spacing_mm):
        raise CccInputError(f"voxel spacing {tuple(spacing_mm)} mm is not positive")
    nz, ny, nx = density.shape
    (x0, y0, z0) = (float(o) - float(c) for o, c in zip(origin_mm, isocenter_mm))
    sx, sy, sz = (float(s) for s in spacing_mm)
    header = (f"Xcount Ycount Zcount\n{ny} {nx} {nz}\n"
              f"Xstart Ystart Zstart\n{y0 / 10:.6f} {x0 / 10:.6f} {z0 / 10:.6f}\n"
              f"dx dy dz\n{sy / 10:.6f} {sx / 10:.6f} {sz / 10:.6f}\n")
    (folder / GEOMETRY_HEADER).write_text(header)
    # The engine's first (fastest) axis is patient y, then x, then z: [z, x, y] in C order.
    np.ascontiguousarray(density.transpose(0, 2, 1)).tofile(folder / DENSITY_FILE)
    path = folder / GEOMETRY_LIST
    path.write_text(f"geometry_header\n{GEOMETRY_HEADER}\ngeometry_density\n{DENSITY_FILE}\n")
    return path


def beam_axes(gantry_deg: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IEC beam's-eye-view X, Y and direction of travel at gantry `gantry_deg`, couch 0, in DICOM patient axes."""
    g = math.radians(gantry_deg)
    x_axis = np.array([math.cos(g), math.sin(g), 0.0])
    y_axis = np.array([0.0, 0.0, 1.0])
    travel = np.array([-math.sin(g), math.cos(g), 0.0])
    return x_axis, y_axis, travel


def write_beamlets(path: Path, beamlets: Sequence[Beamlet], *, first_number: int = 0, sad_mm: float = SAD_MM) -> None:
    """A beamlet spec file; beamlets are numbered from `first_number` in the order given."""
    def engine_axes(v: np.ndarray) -> str:  # patient (x, y, z) -> engine (y, x, z)
        return f"{v[1]:.6f} {v[0]:.6f} {v[2]:.6f}"

    parts = [f"beamnum:\n{len(beamlets)}\n\n"]
    for offset, beamlet in enumerate(beamlets):
        for name in ("width_mm", "height_mm"):
            if not (getattr(beamlet, name) > 0):
                raise CccInputError(f"beamlet {first_number + offset}: {name} must be positive")
        x_axis, y_axis, travel = beam_axes(beamlet.gantry_deg)
        source = -travel * sad_mm / 10.0
        parts.append(f"num\n{first_number + offset}\nSAD xp yp del_xp del_yp\n"
                     f"{sad_mm / 10:.6f} {beamlet.x_mm / 10:.6f} {beamlet.y_mm / 10:.6f} "
                     f"{beamlet.width_mm / 10:.6f} {beamlet.height_mm / 10:.6f}\n"
                     f"y_vec\n{engine_axes(source)}\nip\n{engine_axes(x_axis)}\njp\n{engine_axes(y_axis)}\n"
                     f"kp\n{engine_axes(travel)}\n\n")
    path.write_text("".join(parts))


# --- output ---------------------------------------------------------------------------------------------------------

def read_beamlets(path: Path, shape_zyx: Sequence[int]) -> tuple[np.ndarray, sp.csc_matrix]:
    """The beamlet numbers and doses of an output file: a (voxels x beamlets) matrix, rows in [z, y, x] C order."""
    nz, ny, nx = (int(n) for n in shape_zyx)
    data = Path(path).read_bytes()
    if len(data) < 4:
        raise CccInputError(f"{path.name}: empty engine output")
    count = int(np.frombuffer(data, dtype="<i4", count=1)[0])
    numbers, columns, rows, values = [], [], [], []
    offset = 4
    for column in range(count):
        if offset + 20 > len(data):
            raise CccInputError(f"{path.name}: truncated after {column} of {count} beamlets")
        number, gx, gy, gz, stored = (int(v) for v in np.frombuffer(data, dtype="<i4", count=5, offset=offset))
        offset += 20
        if (gx, gy, gz) != (ny, nx, nz):
            raise CccInputError(f"{path.name}: beamlet {number} has grid {(gx, gy, gz)}, expected {(ny, nx, nz)}")
        if stored < 0 or offset + 8 * stored > len(data):
            raise CccInputError(f"{path.name}: beamlet {number} claims {stored} voxels; the file is too short")
        index = np.frombuffer(data, dtype="<i4", count=stored, offset=offset).astype(np.int64)
        dose = np.frombuffer(data, dtype="<f4", count=stored, offset=offset + 4 * stored)
        offset += 8 * stored
        # Engine linear index: y + ny * (x + nx * z).
        y, rest = index % ny, index // ny
        x, z = rest % nx, rest // nx
        rows.append((z * ny + y) * nx + x)
        values.append(dose)
        columns.append(np.full(stored, column, dtype=np.int64))
        numbers.append(number)
    matrix = sp.csc_matrix((np.concatenate(values) if values else np.zeros(0, np.float32),
                            (np.concatenate(rows) if rows else np.zeros(0, np.int64),
                             np.concatenate(columns) if columns else np.zeros(0, np.int64))),
                           shape=(nz * ny * nx, count), dtype=np.float32)
    return np.asarray(numbers, dtype=np.int64), matrix


# --- availability ---------------------------------------------------------------------------------------------------

_cache: dict[tuple[str, str], dict] = {}
_cache_lock = threading.Lock()


def status(root: Path | None = None, *, kernels: str = DEFAULT_KERNELS, refresh: bool = False) -> dict:
    """Whether the engine runs here: {"available", "reason", "binary", "kernels", ...}, probed once per process.

    The probe checks, in order, that opentps-core is installed, that the
    executable is there and may be run, that the kernel files are there with
    the sizes their header implies, and then runs the engine on one beamlet
    in a small water cube (a few milliseconds). `reason` names the first
    thing missing, or says what was checked when it is available.
    """
    key = (str(root), kernels)
    with _cache_lock:
        if refresh or key not in _cache:
            _cache[key] = probe(root, kernels=kernels)
        return dict(_cache[key])


def probe(root: Path | None = None, *, kernels: str = DEFAULT_KERNELS) -> dict:
    """`status` without the cache."""
    try:
        engine = locate(root, kernels)
    except FileNotFoundError as exc:
        return _unavailable(str(exc))
    result = {"binary": str(engine.binary), "kernels": str(engine.kernels)}
    problem = _missing_files(engine)
    if problem:
        return _unavailable(problem, **result)
    try:
        problem = _test_run(engine)
    except OSError as exc:
        problem = f"could not start {engine.binary} on this {platform.machine()} host: {exc}"
    if problem:
        return _unavailable(problem, **result)
    return {"available": True, **result,
            "reason": f"{engine.binary.name} ran a test beamlet in water with the {engine.kernels.name} kernels"}


def _unavailable(reason: str, **details: str) -> dict:
    logger.info("photon CCC engine unavailable: %s", reason)
    return {"available": False, "reason": reason, **details}


def _missing_files(engine: CccEngine) -> str | None:
    binary = engine.binary
    if not binary.is_file():
        return f"the CCC engine executable {binary} is missing (opentps-core 2.0.0 ships it)"
    if not os.access(binary, os.X_OK):
        return f"{binary} is not executable (the wheel ships it without its run bit): run scripts/fix_opentps.py"
    if not engine.kernels.is_dir():
        return f"the CCC kernel folder {engine.kernels} is missing"
    for name in KERNEL_FILES.values():
        if not (engine.kernels / name).is_file():
            return f"CCC kernel file {engine.kernels / name} is missing"
    try:
        header = (engine.kernels / "kernel_header.txt").read_text().split()
        n_radii, n_angles, n_energies = (int(v) for v in header[-3:])
    except (ValueError, OSError):
        return f"{engine.kernels / 'kernel_header.txt'} does not end with the radii, angles and energies counts"
    expected = {"radii.bin": n_radii, "angles.bin": n_angles,
                **{name: n_energies for name in _PER_ENERGY},
                **{name: n_radii * n_angles * n_energies for name in _PER_KERNEL}}
    for name, floats in expected.items():
        size = (engine.kernels / name).stat().st_size
        if size < 4 * floats:
            return (f"CCC kernel file {engine.kernels / name} has {size} bytes, expected {4 * floats} for "
                    f"{n_radii} radii x {n_angles} angles x {n_energies} energies")
    return None


def _test_run(engine: CccEngine) -> str | None:
    """Run the engine on one 1 cm beamlet through a 9 cm water cube; None when it computed a dose."""
    with tempfile.TemporaryDirectory(prefix="orthanc-rt-ccc-probe-") as tmp:
        folder = Path(tmp)
        shape, spacing = (9, 9, 9), (10.0, 10.0, 10.0)
        origin = tuple(-(n - 1) / 2 * s for n, s in zip(shape, spacing))
        kernel_list = write_kernel_list(folder, engine)
        geometry = write_geometry(folder, np.ones(shape, np.float32), origin, spacing, (0.0, 0.0, 0.0))
        write_beamlets(folder / "beamlets.txt", [Beamlet(0.0, 0.0, 0.0, 10.0, 10.0)])
        command = [str(engine.binary), kernel_list.name, geometry.name, "beamlets.txt", "dose.bin"]
        try:
            run = subprocess.run(command, cwd=folder, stdin=subprocess.DEVNULL, capture_output=True,
                                 timeout=_PROBE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return f"{engine.binary.name} did not finish a one-beamlet test within {_PROBE_TIMEOUT_S:g} s"
        output = (run.stdout + run.stderr).decode(errors="replace").strip()
        if run.returncode != SUCCESS_EXIT_CODE:
            return (f"{engine.binary.name} failed a one-beamlet test (exit code {run.returncode}"
                    f"{_signal_name(run.returncode)}; expected {SUCCESS_EXIT_CODE}): {output[-400:] or 'no output'}")
        if FAILED_BEAMLET_MARK in output:
            return f"{engine.binary.name} failed the test beamlet: {output[-400:]}"
        try:
            _, matrix = read_beamlets(folder / "dose.bin", shape)
        except (OSError, CccInputError) as exc:
            return f"{engine.binary.name} wrote no readable dose for a test beamlet: {exc}"
        dose = np.asarray(matrix.sum(axis=1)).reshape(shape)
        if not (np.all(np.isfinite(dose)) and dose[4, :, 4].max() > 0):
            return f"{engine.binary.name} computed no dose on the axis of a test beamlet"
    return None



def _signal_name(returncode: int) -> str:
    if returncode >= 0:
        return ""
    try:
        return f", killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f", killed by signal {-returncode}"
