"""Benchmark 9: a robustness evaluation's scenario doses over 1 and 2 workers (worker.engines.scenario_fanout).

The case (`--case`) is `water`, the small water phantom of tests/support/cases.py (its
plan: one field, 64 spots), or `pelvis` (the default, the issue's case): the pelvis
phantom of tests/support/pelvis.py (2 mm CT) with two lateral fields whose
spots OpenTPS places on the PTV as planning places them (`ProtonPlanDesign`,
tests/support/opentps_plans.designed_plan; `--scale` sizes the PTV,
`--spot-spacing` spaces spots and layers), every spot 1 MU: the timing does
not depend on the weights. In one run it times:

- one nominal dose, MCsquare on every core (what a dose job does), before and after the rest;
- the scenario set (default: the reduced set, 21 scenarios at 3 mm / 3.5 %)
  with this process as the evaluation job and the only worker (it computes
  every scenario), 1 MCsquare thread;
- the same with one more `python -m worker` process, 1 thread each.

It prints (a) the speed-up of 2 workers over 1 (ideal 2 on 2 cores) and its
efficiency, and (b) the time of the 21 scenarios on 2 workers over the time of
one nominal dose (at most 25 is the issue's aim; 21 runs of the same cost
make 21 the ideal). The machine may be shared: figures are from one run.

    .venv/bin/python -m bench.robustness_speed [--case pelvis] [--primaries 1000000] [--scale 1.0]
        [--spot-spacing 5] [--redis redis://127.0.0.1:6379/11]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from bench._common import BENCH_REDIS_URL
from orthanc_rt.dicom.ion_plan import read_ion_plan
from orthanc_rt.dicom.models import CtVolume, IonPlan
from orthanc_rt.ops.phantom import case_uid
from orthanc_rt.scheduling.robustness import scenario_set
from tests.support.cases import small_phantom_case
from tests.support.opentps_plans import designed_plan
from tests.support.pelvis import pelvis_case
from tests.support.rq_workers import rq_workers
from worker.engines.plan_convert import from_opentps_plan
from worker.engines.proton_dose import compute_dose
from worker.engines.scenario_fanout import ScenarioDoses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--primaries", type=int, default=100_000, help="per scenario (and for the nominal dose)")
    parser.add_argument("--setup-mm", type=float, default=3.0)
    parser.add_argument("--range-pct", type=float, default=3.5)
    parser.add_argument("--case", choices=("water", "pelvis"), default="pelvis")
    parser.add_argument("--scale", type=float, default=1.0, help="pelvis: PTV size (1.0: about 94 cc)")
    parser.add_argument("--spot-spacing", type=float, default=5.0, help="pelvis: mm between spots and layers")
    parser.add_argument("--redis", default=os.environ.get("ORTHANC_RT_BENCH_REDIS", BENCH_REDIS_URL))
    args = parser.parse_args()
    if args.case == "pelvis":
        ct, plan = pelvis_plan(args.scale, args.spot_spacing)
        what = f"pelvis phantom, PTV scale {args.scale:g}, spots every {args.spot_spacing:g} mm"
    else:
        case = small_phantom_case("bench-robustness")
        ct, plan, what = case.ct_volume, read_ion_plan(case.plan), "small water phantom"
    scenarios = scenario_set("reduced", args.setup_mm, args.range_pct)
    work = Path(tempfile.mkdtemp(prefix="orthanc-rt-bench-robustness-"))
    print(f"Robustness scenarios, {what}: CT {ct.shape_zyx}, {len(plan.beams)} beams, "
          f"{plan.spot_count} spots, {len(scenarios)} scenarios, {args.primaries:.0e} primaries each, "
          f"{os.cpu_count()} CPUs")

    def nominal_dose() -> float:
        started = time.perf_counter()
        compute_dose(ct, plan, primaries=args.primaries, work_dir=work / "nominal", threads=0)
        return time.perf_counter() - started

    def evaluation(workers: int) -> tuple[float, str]:
        with rq_workers(args.redis, workers - 1, work / f"workers-{workers}", threads=1):
            runner = ScenarioDoses(args.redis, part_timeout_s=3600)
            started = time.perf_counter()
            runner(ct, plan, scenarios, primaries=args.primaries, work_dir=work / f"fanout-{workers}", threads=1)
            seconds = time.perf_counter() - started
        report = runner.last_report
        executors = len({run["executor"] for run in report.runs})
        return seconds, (f"{len(report.stolen)} of {len(report.parts)} by the evaluation job, {executors} "
                         f"process(es); Redis: CT {report.context_bytes / 1e6:.2f} MB, doses "
                         f"{report.result_bytes / 1e6:.1f} MB")

    # Timed before and after the evaluations (the load of a shared machine drifts): their mean is the reference.
    before = nominal_dose()
    t1, detail1 = evaluation(1)
    t2, detail2 = evaluation(2)
    after = nominal_dose()
    nominal = (before + after) / 2
    speedup = t1 / t2
    print(f"  one nominal dose, all cores  {nominal:7.1f} s   (before {before:.1f} s, after {after:.1f} s)")
    print(f"  1 worker  x 1 thread         {t1:7.1f} s   ({detail1})")
    print(f"  2 workers x 1 thread         {t2:7.1f} s   ({detail2})")
    print(f"  (a) speed-up 2 workers / 1 worker = {speedup:.2f}, efficiency {speedup / 2:.0%} (aim >= 80 %)")
    print(f"  (b) {len(scenarios)} scenarios on 2 workers / one nominal dose = {t2 / nominal:.1f} (aim <= 25)")


def pelvis_plan(scale: float, spot_spacing_mm: float) -> tuple[CtVolume, IonPlan]:
    """The pelvis phantom and a two-field plan (gantry 90 and 270) on its PTV, every spot 1 MU."""
    pelvis = pelvis_case(scale, name="bench-robustness")
    case = pelvis.case
    plan = designed_plan(case, gantry=(90.0, 270.0), couch=(0.0, 0.0), spacing_mm=spot_spacing_mm)
    plan.spotMUs = np.ones(plan.numberOfSpots)
    study = case.study
    ion = from_opentps_plan(plan, sop_instance_uid=case_uid("bench-robustness", "plan"),
                            series_instance_uid=case_uid("bench-robustness", "plan-series"),
                            study_instance_uid=study.study_instance_uid,
                            frame_of_reference_uid=study.frame_of_reference_uid, label="BENCH")
    return pelvis.ct, ion


if __name__ == "__main__":
    main()
