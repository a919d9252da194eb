"""Benchmark: 3D gamma, Orthanc-RT's gamma_3d vs pymedphys.gamma 0.41.0 (the oracle), same doses, all points.

    .venv/bin/python -m bench.gamma_speed [--repeat 3] [--criteria 3 2]

The case is the smooth proton-like dose of tests/support/oracle.py (an SOBP
with lateral penumbrae) on a 72 x 72 x 50 grid at 2.5 / 2.5 / 3 mm, about
98 000 points above the 10 % threshold; the evaluated dose is that dose
shifted 1 mm laterally, scaled by +1 % and given 2 % Poisson-like noise (as
a Monte Carlo recompute of a TPS dose might look). pymedphys runs in
.venv-oracle (scripts/install.sh --dev), configured as
orthanc_rt.analysis.gamma describes (max_gamma 2, interp_fraction 10,
normalised to the reference maximum), once, its numba code loaded first;
gamma_3d runs --repeat times (the first run builds its search shells).
Printed: CPU time (what other load on the machine barely changes: the ratio
to trust here) and wall time of each, the ratio (target: Orthanc-RT at least
10x faster), both pass rates and how far the two gamma maps differ.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

# One BLAS thread, so our CPU time is one computation's work (pymedphys' numba loops use every core).
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from orthanc_rt.analysis.gamma import GammaCriteria, gamma_3d  # noqa: E402
from tests.support.oracle import oracle_python, pymedphys_gamma, sobp_dose, with_noise  # noqa: E402

SHAPE = (50, 72, 72)  # [z, y, x]
SPACING = (2.5, 2.5, 3.0)  # (x, y, z) mm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="runs of gamma_3d; the best counts")
    parser.add_argument("--criteria", type=float, nargs=2, default=(3.0, 2.0), metavar=("PERCENT", "MM"))
    parser.add_argument("--local", action="store_true", help="local instead of global dose criterion")
    args = parser.parse_args()
    criteria = GammaCriteria(args.criteria[0], args.criteria[1], 10.0, local=args.local)
    reference = sobp_dose(SHAPE, SPACING, field_mm=110.0, plateau_mm=(60.0, 130.0))
    evaluated = with_noise(1.01 * sobp_dose(SHAPE, SPACING, field_mm=110.0, plateau_mm=(60.0, 130.0),
                                            shift_mm=(1.0, 0.0, 0.0)), 2.0, seed=7)
    print(f"Gamma {criteria.name}, threshold 10 %: grid {SHAPE[2]}x{SHAPE[1]}x{SHAPE[0]} at "
          f"{'/'.join(f'{s:g}' for s in SPACING)} mm, {os.cpu_count()} CPUs")
    ours = []
    for _ in range(args.repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = gamma_3d(reference, evaluated, SPACING, criteria)
        ours.append((time.perf_counter() - wall, time.process_time() - cpu))
    print(f"points evaluated: {result.evaluated_points}")
    print(f"orthanc-rt gamma_3d: CPU {min(c for _, c in ours):.3f} s, wall {min(w for w, _ in ours):.3f} s "
          f"(best of {args.repeat}; first run {ours[0][0]:.3f} s wall); pass rate {result.pass_rate_percent:.3f} %")
    python = oracle_python()
    if python is None:
        print("no .venv-oracle (scripts/install.sh --dev) for the pymedphys comparison")
        return
    theirs, maps = pymedphys_gamma(python, reference, evaluated, SPACING, [criteria], Path(tempfile.mkdtemp()))
    row = theirs["results"][0]
    print(f"{theirs['oracle']} gamma: CPU {row['cpu_s']:.3f} s, wall {row['wall_s']:.3f} s; "
          f"pass rate {row['pass_rate_percent']:.3f} % ({row['evaluated_points']} points)")
    cpu_ratio = row["cpu_s"] / min(c for _, c in ours)
    wall_ratio = row["wall_s"] / min(w for w, _ in ours)
    print(f"ratio pymedphys / orthanc-rt: CPU {cpu_ratio:.1f}x, wall {wall_ratio:.1f}x (target >= 10x); "
          f"pass rates differ by {abs(result.pass_rate_percent - row['pass_rate_percent']):.3f} percentage point; "
          f"largest gamma difference {np.nanmax(np.abs(result.gamma - maps[0])):.2e}")


if __name__ == "__main__":
    main()
