"""Benchmark: the cost of LET scoring, time of a dose with LETd / time of the same dose without.

The case is the small water phantom of the integration tests (3 mm voxels, a 15 mm target at 50 mm depth,
one field, tests/support/cases.small_phantom_case). Each round runs MCsquare once without and once with
`LET_MHD_Output` (compute_dose, compute_dose_and_let) at --primaries, alternately, so other load on the
machine slows both alike. Prints each round, the medians and their ratio (issue 16's target: at most 1.3).

    .venv/bin/python -m bench.let_cost [--primaries 1000000] [--rounds 3]
"""
from __future__ import annotations

import argparse
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
    without, with_let = [], []
    try:
        for round_ in range(1, args.rounds + 1):
            without.append(timed(lambda: compute_dose(ct, plan, primaries=args.primaries, work_dir=work / "dose")))
            with_let.append(timed(lambda: compute_dose_and_let(ct, plan, primaries=args.primaries,
                                                               work_dir=work / "let")))
            print(f"round {round_}: dose {without[-1]:.2f} s, dose + LETd {with_let[-1]:.2f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    a, b = statistics.median(without), statistics.median(with_let)
    print(f"{plan.spot_count} spots, {args.primaries:.0e} primaries, CT {ct.hu.shape} (z, y, x)")
    print(f"median: dose {a:.2f} s, dose + LETd {b:.2f} s")
    print(f"LET cost ratio (with / without): {b / a:.2f}  (target <= 1.3)")


if __name__ == "__main__":
    main()
