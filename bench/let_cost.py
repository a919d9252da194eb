"""Benchmark: the cost of LET scoring, time of a dose with LETd / time of the same dose without.

The case is the small water phantom of the integration tests (3 mm voxels, a 15 mm target at 50 mm depth,
one field, tests/support/cases.small_phantom_case). Each round runs MCsquare once without and once with
`LET_MHD_Output` (compute_dose, compute_dose_and_let) at --primaries, alternately, so other load on the
machine slows both alike. Prints each round and the median ratios (issue 16's target: at most 1.3) of wall time
and of MCsquare's CPU time (user + system of the child processes: what other load on the machine barely
changes, the ratio to trust on a shared machine).

    .venv/bin/python -m bench.let_cost [--primaries 1000000] [--rounds 3]
"""
from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import tempfile
from pathlib import Path

from bench._common import timed
from orthanc_rt.dicom.ion_plan import read_ion_plan
from tests.support.cases import small_phantom_case
from worker.engines.proton_dose import compute_dose, compute_dose_and_let


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--primaries", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    case = small_phantom_case("bench-let")
    ct, plan = case.ct_volume, read_ion_plan(case.plan)
    work = Path(tempfile.mkdtemp(prefix="orthanc-rt-bench-let-"))
    wall_ratios, cpu_ratios = [], []
    try:
        for round_ in range(1, args.rounds + 1):
            plain = _measure(lambda: compute_dose(ct, plan, primaries=args.primaries, work_dir=work / "dose"))
            let = _measure(lambda: compute_dose_and_let(ct, plan, primaries=args.primaries, work_dir=work / "let"))
            wall_ratios.append(let[0] / plain[0])
            cpu_ratios.append(let[1] / plain[1])
            print(f"round {round_}: dose {plain[0]:.2f} s ({plain[1]:.2f} s CPU), dose + LETd {let[0]:.2f} s "
                  f"({let[1]:.2f} s CPU): ratio {wall_ratios[-1]:.2f} wall, {cpu_ratios[-1]:.2f} CPU", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{plan.spot_count} spots, {args.primaries:.0e} primaries, CT {ct.hu.shape} (z, y, x)")
    print(f"LET cost ratio (with / without), median of {args.rounds} rounds: "
          f"{statistics.median(cpu_ratios):.2f} CPU time, {statistics.median(wall_ratios):.2f} wall time "
          "(target <= 1.3)")


def _measure(run) -> tuple[float, float]:
    """Wall time and the CPU time of the child processes (MCsquare) of one call."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = timed(run)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


if __name__ == "__main__":
    main()
