"""The test oracles in their own virtualenv (.venv-oracle, made by `scripts/install.sh --dev`).

dicompyler-core for DVHs (tests/oracle/dicompyler_dvh.py), pymedphys for the
gamma index (tests/oracle/pymedphys_gamma.py), plus the synthetic proton-like
doses the gamma comparisons and bench/gamma_speed.py feed both sides.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from scipy.special import erf

from orthanc_rt.analysis.gamma import GammaCriteria

REPO = Path(__file__).resolve().parents[2]
ORACLE_SCRIPT = REPO / "tests" / "oracle" / "dicompyler_dvh.py"
GAMMA_ORACLE_SCRIPT = REPO / "tests" / "oracle" / "pymedphys_gamma.py"


def oracle_python() -> str | None:
    for candidate in (os.environ.get("ORTHANC_RT_ORACLE_PYTHON"), REPO / ".venv-oracle" / "bin" / "python",
                      Path(sys.prefix).parent / ".venv-oracle" / "bin" / "python"):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    return None


def pymedphys_gamma(python: str, reference: np.ndarray, evaluated: np.ndarray,
                    spacing_mm: tuple[float, float, float], criteria: list[GammaCriteria], work_dir: Path, *,
                    max_gamma: float = 2.0, interp_fraction: int = 10,
                    timeout_s: float = 1800) -> tuple[dict, list[np.ndarray]]:
    """pymedphys.gamma of `evaluated` against `reference` for each criteria: (its JSON, its gamma maps).

    The JSON holds "oracle" (pymedphys and its version) and per criteria "evaluated_points",
    "pass_rate_percent", "cpu_s" and "wall_s" (pymedphys' own call, start-up not counted).
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    rows = [(c.dose_percent, c.distance_mm, c.low_dose_threshold_percent, float(c.local), max_gamma,
             interp_fraction) for c in criteria]
    np.savez(work_dir / "gamma-in.npz", reference=reference, evaluated=evaluated,
             spacing_xyz=np.asarray(spacing_mm, dtype=float), criteria=np.asarray(rows, dtype=float))
    run = subprocess.run([python, str(GAMMA_ORACLE_SCRIPT), str(work_dir / "gamma-in.npz"),
                          str(work_dir / "gamma-out.npz")], capture_output=True, text=True, timeout=timeout_s)
    if "No module named 'pymedphys'" in run.stderr:
        raise RuntimeError(f"{python} has no pymedphys: run scripts/install.sh --dev (requirements-oracle.txt)")
    if run.returncode != 0:
        raise RuntimeError(f"pymedphys gamma oracle failed: {run.stderr[-2000:]}")
    with np.load(work_dir / "gamma-out.npz") as maps:
        return json.loads(run.stdout), [maps[f"gamma_{i}"] for i in range(len(criteria))]


def sobp_dose(shape_zyx: tuple[int, int, int], spacing_mm: tuple[float, float, float], *,
              field_mm: float = 70.0, plateau_mm: tuple[float, float] = (45.0, 95.0), peak_gy: float = 2.0,
              shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """A smooth proton-like dose [z, y, x] Gy: a spread-out Bragg peak along z (depth), a square field in x, y.

    Entrance at ~55 % rising to a plateau with a 1 % ripple, a distal fall-off of ~4 mm 80-20 %
    (error function, sigma 2.5 mm), lateral penumbrae of ~5 mm 80-20 % (sigma 3 mm). `shift_mm`
    (x, y, z) moves the whole dose, evaluated analytically rather than resampled.
    """
    sx, sy, sz = spacing_mm
    nz, ny, nx = shape_zyx
    z = np.arange(nz) * sz - shift_mm[2]
    y = (np.arange(ny) - (ny - 1) / 2) * sy - shift_mm[1]
    x = (np.arange(nx) - (nx - 1) / 2) * sx - shift_mm[0]
    proximal, distal = plateau_mm
    rise = 0.55 + 0.45 * 0.5 * (1 + erf((z - proximal) / 12.0))
    ripple = 1 + 0.01 * np.sin(2 * np.pi * z / 7.0) * (z > proximal)
    depth = rise * ripple * 0.5 * (1 - erf((z - distal) / (2.5 * np.sqrt(2))))

    def lateral(c: np.ndarray) -> np.ndarray:
        half, sigma = field_mm / 2, 3.0 * np.sqrt(2)
        return 0.25 * (1 + erf((c + half) / sigma)) * (1 + erf((half - c) / sigma))

    return peak_gy * depth[:, None, None] * lateral(y)[None, :, None] * lateral(x)[None, None, :]


def with_noise(dose: np.ndarray, percent: float, seed: int) -> np.ndarray:
    """Poisson-like Monte Carlo noise: standard deviation `percent` % of the maximum there, ~sqrt(dose) elsewhere."""
    rng = np.random.default_rng(seed)
    peak = float(dose.max())
    return dose + percent / 100.0 * np.sqrt(np.clip(dose, 0, None) * peak) * rng.standard_normal(dose.shape)
