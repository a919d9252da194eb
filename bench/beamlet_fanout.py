"""Benchmark 5: a plan's beamlet phase spread over 1 and 2 workers (worker.engines.beamlet_fanout).

The case is OpenTPS' SimpleFantomWithStruct as the planning test uses it
(CT averaged to 2 mm, 4 mm scoring grid, two opposed beams, 1564 spots;
read in place from /work/shared/data, or ORTHANC_RT_SHARED_DATA), or the
small water phantom of tests/support/cases.py when that data is absent. The spots are
placed once; then, in one run, the beamlet phase is timed as:

- 1 worker: this process is the plan job and the only worker, so the
  fan-out keeps the single-process computation (one MCsquare run, 1 thread);
- 2 workers: this process and one `python -m worker` process share the parts;
- the same parts computed by this process alone (as when the other worker is
  busy): what cutting the plan into parts costs;
- 1 worker given both cores (one MCsquare run on 2 threads), for reference.

Every process runs MCsquare on one thread in the fan-out rows, so 2 workers x 1
thread against 1 worker x 1 thread is the fair comparison on a 2-core
machine. Speed-up = fan-out 1 worker / fan-out 2 workers; efficiency =
speed-up / 2. The machine may be shared: figures are from one run.

    .venv/bin/python -m bench.beamlet_fanout [--primaries 1000] [--split-spots 500]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from bench._common import BENCH_REDIS_URL
from tests.support.rq_workers import rq_workers
from worker.engines.beamlet_fanout import DistributedBeamlets
from worker.engines.beamlets import local_beamlets
from worker.engines.proton_dose import default_beam_model, scoring_grid, to_opentps_ct

DATA = Path(os.environ.get("ORTHANC_RT_SHARED_DATA", "/work/shared/data")) / "SimpleFantomWithStruct"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--primaries", type=int, default=1000, help="per spot")
    parser.add_argument("--split-spots", type=int, default=500, help="most spots in one part")
    parser.add_argument("--redis", default=os.environ.get("ORTHANC_RT_BENCH_REDIS", BENCH_REDIS_URL))
    args = parser.parse_args()
    name, ct, plan, grid = _case()
    model = default_beam_model()
    work = Path(tempfile.mkdtemp(prefix="orthanc-rt-bench-fanout-"))
    print(f"Beamlet phase, {name}: {plan.numberOfSpots} spots, {len(list(plan))} beams, {grid.size_xyz} scoring "
          f"grid, {args.primaries} primaries per spot, {os.cpu_count()} CPUs")

    def single(threads: int) -> float:
        started = time.perf_counter()
        local_beamlets(ct, plan, model, grid, primaries=args.primaries, work_dir=work / f"single-{threads}",
                       threads=threads)
        return time.perf_counter() - started

    def fanout(workers: int, executors: int | None = None) -> tuple[float, str]:
        with rq_workers(args.redis, workers - 1, work / f"workers-{workers}-{executors}", threads=1):
            runner = DistributedBeamlets(args.redis, split_spots=args.split_spots, executors=executors)
            started = time.perf_counter()
            runner(ct, plan, model, grid, primaries=args.primaries, work_dir=work / f"fanout-{workers}-{executors}",
                   threads=1)
            seconds = time.perf_counter() - started
        report = runner.last_report
        if len(report.parts) == 1:
            return seconds, "1 part: the single-process computation"
        executors_seen = len({run["executor"] for run in report.runs})
        return seconds, (f"{len(report.parts)} parts, {len(report.stolen)} by the plan job, {executors_seen} "
                         f"process(es); Redis: CT {report.context_bytes / 1e6:.2f} MB, results "
                         f"{report.result_bytes / 1e6:.1f} MB")

    t1, detail1 = fanout(1)
    t2, detail2 = fanout(2)
    t_alone, detail_alone = fanout(1, executors=2)
    t_threads = single(2)
    speedup = t1 / t2
    print(f"  1 worker  x 1 thread    {t1:7.1f} s   ({detail1})")
    print(f"  2 workers x 1 thread    {t2:7.1f} s   ({detail2})")
    print(f"  same parts, 1 process   {t_alone:7.1f} s   ({detail_alone})")
    print(f"  1 worker  x 2 threads   {t_threads:7.1f} s   (reference)")
    print(f"  speed-up 2 workers / 1 worker = {speedup:.2f}, efficiency {speedup / 2:.0%}")
    print(f"  cost of the parts: {t_alone / t1:.3f} x the single computation; "
          f"2 threads in one MCsquare: speed-up {t1 / t_threads:.2f}")


def _case():
    """(name, OpenTPS CT, designed ProtonPlan, scoring grid)."""
    from opentps.core.data.images import ROIMask
    from opentps.core.data.plan._protonPlanDesign import ProtonPlanDesign

    if DATA.is_dir():
        from tests.support.cases import read_simple_fantom

        ct, masks = read_simple_fantom(DATA, downsample=2)
        target, name, spacing, angles = masks["TargetVolume"], "SimpleFantom (2 mm CT)", 4.0, (0.0, 180.0)
    else:
        from tests.support.cases import small_phantom_case

        case = small_phantom_case("bench-fanout")
        ct, target, name, spacing, angles = case.ct_volume, case.target_mask, "small water phantom", 3.0, (0.0,
                                                                                                            180.0)
    grid = scoring_grid(ct, spacing)
    design = ProtonPlanDesign()
    design.ct = to_opentps_ct(ct)
    design.calibration = default_beam_model().calibration
    design.gantryAngles, design.couchAngles = list(angles), [0.0] * len(angles)
    design.beamNames = [f"B{k + 1}" for k in range(len(angles))]
    design.spotSpacing = design.layerSpacing = 5.0
    design.targetMargin = 5.0
    design.setScoringParameters(scoringGridSize=list(grid.size_xyz), scoringSpacing=list(grid.spacing_mm),
                                scoringOrigin=list(grid.origin_mm))
    design.defineTargetMaskAndPrescription(
        target=ROIMask(imageArray=target.transpose(2, 1, 0).copy(), name="TargetVolume", origin=ct.origin_mm,
                       spacing=ct.spacing_mm), targetPrescription=2.0)
    return name, design.ct, design.buildPlan(), grid


if __name__ == "__main__":
    main()
